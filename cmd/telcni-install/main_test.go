package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

type dirs struct{ src, bin, conf string }

func setup(t *testing.T, plugin []byte) dirs {
	t.Helper()
	d := dirs{t.TempDir(), t.TempDir(), t.TempDir()}
	if err := os.WriteFile(filepath.Join(d.src, "telcni"), plugin, 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d dirs) args(extra ...string) []string {
	return append([]string{"-src-dir", d.src, "-bin-dir", d.bin, "-conf-dir", d.conf}, extra...)
}

func logger(t *testing.T) *slog.Logger { return slog.New(slog.NewTextHandler(t.Output(), nil)) }

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func noTemps(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if strings.Contains(e.Name(), ".tmp-") {
				t.Errorf("temporary file left in %s: %s", d, e.Name())
			}
		}
	}
}

type conflist struct {
	CNIVersion string           `json:"cniVersion"`
	Name       string           `json:"name"`
	Plugins    []map[string]any `json:"plugins"`
}

func readConflist(t *testing.T, p string) conflist {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var cl conflist
	if err := json.Unmarshal(b, &cl); err != nil {
		t.Fatalf("%s is not JSON: %v\n%s", p, err, b)
	}
	return cl
}

func TestInstall(t *testing.T) {
	plugin := bytes.Repeat([]byte("telcni plugin\n"), 100_000) // 1.4 MB: more than one write
	d := setup(t, plugin)
	// Another plugin's files and an older telcni binary already on the node.
	other := filepath.Join(d.conf, "10-other.conflist")
	otherBin := filepath.Join(d.bin, "macvlan")
	for _, f := range []string{other, otherBin} {
		if err := os.WriteFile(f, []byte("not ours"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(d.bin, "telcni"), []byte("old version"), 0o755); err != nil {
		t.Fatal(err)
	}

	if err := run(d.args("-default-network", "oam"), logger(t)); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(d.bin, "telcni")
	got, err := os.ReadFile(bin)
	if err != nil || !bytes.Equal(got, plugin) {
		t.Fatalf("plugin binary: %d bytes, want %d (%v)", len(got), len(plugin), err)
	}
	if fi, _ := os.Stat(bin); fi.Mode().Perm() != 0o755 {
		t.Errorf("plugin binary mode %v, want 0755", fi.Mode().Perm())
	}
	conf := filepath.Join(d.conf, "00-telcni.conflist")
	cl := readConflist(t, conf)
	if cl.CNIVersion != "1.1.0" || cl.Name != "telcni" || len(cl.Plugins) != 1 ||
		cl.Plugins[0]["type"] != "telcni" || cl.Plugins[0]["defaultNetwork"] != "oam" || len(cl.Plugins[0]) != 2 {
		t.Errorf("conflist: %+v", cl)
	}
	if fi, _ := os.Stat(conf); fi.Mode().Perm() != 0o644 {
		t.Errorf("conflist mode %v, want 0644", fi.Mode().Perm())
	}
	for _, f := range []string{other, otherBin} {
		if b, _ := os.ReadFile(f); string(b) != "not ours" {
			t.Errorf("%s was touched", f)
		}
	}
	noTemps(t, d.bin, d.conf)

	// Idempotent: a second run leaves both files as they are (same inode:
	// not even rewritten, so runtimes watching net.d do not reload).
	binIno, confIno := inode(t, bin), inode(t, conf)
	if err := run(d.args("-default-network", "oam"), logger(t)); err != nil {
		t.Fatal(err)
	}
	if inode(t, bin) != binIno || inode(t, conf) != confIno {
		t.Error("a second run with the same input rewrote the files")
	}
	if b, _ := os.ReadFile(bin); !bytes.Equal(b, plugin) {
		t.Error("plugin binary changed on the second run")
	}

	// A different config replaces the conflist (without defaultNetwork).
	if err := run(d.args("-network-name", "cluster"), logger(t)); err != nil {
		t.Fatal(err)
	}
	cl = readConflist(t, conf)
	if _, ok := cl.Plugins[0]["defaultNetwork"]; ok || cl.Name != "cluster" {
		t.Errorf("conflist after the change: %+v", cl)
	}
	if inode(t, bin) != binIno {
		t.Error("the unchanged binary was rewritten")
	}
	noTemps(t, d.bin, d.conf)
}

func TestInstallErrorsNamePaths(t *testing.T) {
	d := setup(t, []byte("plugin"))
	missing := filepath.Join(t.TempDir(), "no", "such", "dir")
	if err := run(d.args("-bin-dir", missing), logger(t)); err == nil || !strings.Contains(err.Error(), filepath.Join(missing, "telcni")) {
		t.Errorf("missing bin dir: %v, want it named", err)
	}
	empty := t.TempDir()
	if err := run(d.args("-src-dir", empty), logger(t)); err == nil || !strings.Contains(err.Error(), filepath.Join(empty, "telcni")) {
		t.Errorf("no plugin binary to install: %v, want its path named", err)
	}
	for _, bad := range []string{"", "../x.conflist", ".hidden"} {
		if err := run(d.args("-conflist-name", bad), logger(t)); err == nil || !strings.Contains(err.Error(), "-conflist-name") {
			t.Errorf("-conflist-name %q: %v", bad, err)
		}
	}
}

// TestInstallReadOnly: a target directory that cannot be written fails the
// install with an error naming the file, and leaves nothing behind.
func TestInstallReadOnly(t *testing.T) {
	for _, target := range []string{"bin", "conf"} {
		t.Run(target, func(t *testing.T) {
			d := setup(t, []byte("plugin"))
			ro, want := d.bin, filepath.Join(d.bin, "telcni")
			if target == "conf" {
				ro, want = d.conf, filepath.Join(d.conf, "00-telcni.conflist")
			}
			var err error
			readOnly(t, ro, func() { err = run(d.args(), logger(t)) })
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("read-only %s: %v, want an error naming %s", ro, err, want)
			}
			t.Log(err)
			if ents, _ := os.ReadDir(ro); len(ents) != 0 {
				t.Errorf("%s not left empty: %v", ro, ents)
			}
		})
	}
}

// readOnly runs fn while dir cannot be written. Root writes through mode
// bits, so as root fn runs on a thread of its own in a private mount
// namespace where dir is a read-only bind mount (the host never sees it;
// the thread ends with fn, and the namespace with it).
func readOnly(t *testing.T, dir string, fn func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(dir, 0o755)
		fn()
		return
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with this goroutine
		err := unix.Unshare(unix.CLONE_NEWNS)
		if err == nil {
			err = unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, "")
		}
		if err == nil {
			err = unix.Mount(dir, dir, "", unix.MS_BIND, "")
		}
		if err == nil {
			err = unix.Mount("", dir, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, "")
		}
		if err != nil {
			errc <- err
			return
		}
		fn()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		if errors.Is(err, unix.EPERM) {
			t.Skipf("cannot make %s read-only here (mount namespace: %v)", dir, err)
		}
		t.Fatalf("read-only bind mount of %s: %v", dir, err)
	}
}
