package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// legacyStateDir is where agents before the tmpfs default kept their
// database.
const legacyStateDir = "/var/lib/telcni"

// adoptLegacyState moves the database an older agent kept in legacyDir
// into dir when dir has none (an upgrade): the pods it records are still
// running, and an agent that forgot them would hand their addresses out
// again. The old file is renamed, never adopted twice, and left for the
// operator to delete. It refuses a file another agent holds open.
func adoptLegacyState(dir, legacyDir string) (bool, error) {
	if legacyDir == "" || filepath.Clean(legacyDir) == filepath.Clean(dir) {
		return false, nil
	}
	dst := filepath.Join(dir, "state.db")
	if _, err := os.Stat(dst); err == nil {
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("state database %s: %w", dst, err)
	}
	src := filepath.Join(legacyDir, "state.db")
	in, err := os.Open(src)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("earlier state database %s: %w", src, err)
	}
	defer in.Close()
	// bbolt holds a flock on its file while open: a running agent still
	// owns it, and a copy of a live database could be torn.
	if err := unix.Flock(int(in.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return false, fmt.Errorf("earlier state database %s is in use (another agent running?): %w", src, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("create state dir: %w", err)
	}
	tmp := dst + ".adopting"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return false, fmt.Errorf("adopt %s: %w", src, err)
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("adopt %s into %s: %w", src, dir, err)
	}
	if err := os.Rename(src, src+".adopted"); err != nil {
		return true, fmt.Errorf("adopted %s, but cannot rename it (it would be adopted again after a reboot): %w", src, err)
	}
	return true, nil
}
