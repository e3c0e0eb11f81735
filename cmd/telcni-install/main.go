// Command telcni-install is the DaemonSet's init container: it installs the
// telcni plugin binary into the node's CNI bin directory and the cluster's
// pod-mode conflist into its CNI config directory.
//
// Each file is written to a temporary file in the target directory, synced,
// given its mode and renamed over the old one (then the directory is
// synced), so that a runtime never executes or reads a half-written file
// and a crash leaves the old file or the new one. A file that already has
// the wanted content and mode is left alone, so a restart of the pod does
// not make runtimes watching the config directory reload. Nothing else in
// either directory is touched.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(os.Args[1:], log); err != nil {
		log.Error("install failed", "error", err)
		os.Exit(1)
	}
}

type options struct {
	binDir, confDir, srcDir, conflist, name, defaultNetwork string
}

// pluginName is the plugin binary's file name, in the image and on the node.
const pluginName = "telcni"

func run(args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("telcni-install", flag.ContinueOnError)
	self, _ := os.Executable()
	o := options{}
	fs.StringVar(&o.binDir, "bin-dir", "/host/opt/cni/bin", "the node's CNI plugin directory")
	fs.StringVar(&o.confDir, "conf-dir", "/host/etc/cni/net.d", "the node's CNI config directory")
	fs.StringVar(&o.srcDir, "src-dir", filepath.Dir(self), "directory holding the telcni plugin binary to install (default: this installer's own)")
	fs.StringVar(&o.conflist, "conflist-name", "00-telcni.conflist", "file name of the conflist (runtimes use the first in lexical order)")
	fs.StringVar(&o.name, "network-name", "telcni", "the conflist's network name")
	fs.StringVar(&o.defaultNetwork, "default-network", "", "pod mode: the network of the pod's primary interface (empty: none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.conflist == "" || strings.ContainsRune(o.conflist, '/') || strings.HasPrefix(o.conflist, ".") {
		return fmt.Errorf("-conflist-name %q: want a plain file name", o.conflist)
	}
	if o.name == "" {
		return errors.New("-network-name is empty")
	}
	return install(o, log)
}

func install(o options, log *slog.Logger) error {
	src := filepath.Join(o.srcDir, pluginName)
	bin, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("plugin binary to install: %w", err)
	}
	if len(bin) == 0 {
		return fmt.Errorf("plugin binary to install: %s is empty", src)
	}
	dst := filepath.Join(o.binDir, pluginName)
	changed, err := writeAtomic(dst, 0o755, bin)
	if err != nil {
		return err
	}
	log.Info("plugin binary", "path", dst, "source", src, "bytes", len(bin), "changed", changed)

	plugin := map[string]any{"type": pluginName}
	if o.defaultNetwork != "" {
		plugin["defaultNetwork"] = o.defaultNetwork
	}
	conf, err := json.MarshalIndent(map[string]any{"cniVersion": "1.1.0", "name": o.name, "plugins": []any{plugin}}, "", "  ")
	if err != nil {
		return err
	}
	cdst := filepath.Join(o.confDir, o.conflist)
	changed, err = writeAtomic(cdst, 0o644, append(conf, '\n'))
	if err != nil {
		return err
	}
	log.Info("conflist", "path", cdst, "network", o.name, "defaultNetwork", o.defaultNetwork, "changed", changed)
	return nil
}

// writeAtomic makes path hold data with mode: unless it already does, data
// goes to a temporary file in path's directory, which is synced, given mode
// and renamed over path; then the directory is synced. It reports whether
// path was written. Every error names the path it is about.
func writeAtomic(path string, mode os.FileMode, data []byte) (changed bool, err error) {
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm() == mode && fi.Size() == int64(len(data)) {
		if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, data) {
			return false, nil
		}
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return false, fmt.Errorf("install %s: %w", path, err)
	}
	renamed := false
	defer func() {
		if err != nil && !renamed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, bytes.NewReader(data)); err != nil {
		return false, fmt.Errorf("install %s: write %s: %w", path, tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return false, fmt.Errorf("install %s: sync %s: %w", path, tmp.Name(), err)
	}
	if err := tmp.Chmod(mode); err != nil {
		return false, fmt.Errorf("install %s: chmod %s: %w", path, tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("install %s: close %s: %w", path, tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return false, fmt.Errorf("install %s: %w", path, err)
	}
	renamed = true
	// The rename is durable once the directory is synced. The file is in
	// place whatever this says, so a failure is reported, not undone.
	d, err := os.Open(dir)
	if err == nil {
		err = d.Sync()
		d.Close()
	}
	if err != nil {
		return true, fmt.Errorf("install %s: sync directory: %w", path, err)
	}
	return true, nil
}
