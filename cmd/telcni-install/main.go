// Command telcni-install is the DaemonSet's init container: it installs the
// telcni plugin binary into the node's CNI bin directory and the cluster's
// pod-mode conflist into its CNI config directory. Each file is written to
// a temporary file in the target directory, synced and renamed over the
// old one, so that a runtime never executes or reads a half-written file.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "telcni-install:", err)
		os.Exit(1)
	}
}

type options struct {
	binDir, confDir, srcDir, conflist, name, defaultNetwork string
}

func run(args []string) error {
	fs := flag.NewFlagSet("telcni-install", flag.ContinueOnError)
	self, _ := os.Executable()
	o := options{}
	fs.StringVar(&o.binDir, "bin-dir", "/host/opt/cni/bin", "the node's CNI plugin directory")
	fs.StringVar(&o.confDir, "conf-dir", "/host/etc/cni/net.d", "the node's CNI config directory")
	fs.StringVar(&o.srcDir, "src-dir", filepath.Dir(self), "directory holding the telcni plugin binary to install")
	fs.StringVar(&o.conflist, "conflist-name", "00-telcni.conflist", "file name of the conflist (runtimes use the first in lexical order)")
	fs.StringVar(&o.name, "network-name", "telcni", "the conflist's network name")
	fs.StringVar(&o.defaultNetwork, "default-network", "", "pod mode: the network of the pod's primary interface (empty: only annotated interfaces)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return install(o, slog.New(slog.NewJSONHandler(os.Stderr, nil)))
}

func install(o options, log *slog.Logger) error {
	src := filepath.Join(o.srcDir, "telcni")
	bin, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("plugin binary: %w", err)
	}
	defer bin.Close()
	dst := filepath.Join(o.binDir, "telcni")
	if err := writeAtomic(dst, 0o755, func(w io.Writer) error { _, err := io.Copy(w, bin); return err }); err != nil {
		return err
	}
	log.Info("installed the plugin", "path", dst)
	plugin := map[string]any{"type": "telcni"}
	if o.defaultNetwork != "" {
		plugin["defaultNetwork"] = o.defaultNetwork
	}
	conf, err := json.MarshalIndent(map[string]any{"cniVersion": "1.1.0", "name": o.name, "plugins": []any{plugin}}, "", "  ")
	if err != nil {
		return err
	}
	cdst := filepath.Join(o.confDir, o.conflist)
	if err := writeAtomic(cdst, 0o644, func(w io.Writer) error { _, err := w.Write(append(conf, '\n')); return err }); err != nil {
		return err
	}
	log.Info("installed the conflist", "path", cdst, "network", o.name, "defaultNetwork", o.defaultNetwork)
	return nil
}

// writeAtomic writes path through a temporary file in its directory:
// written, synced, given mode, then renamed over path.
func writeAtomic(path string, mode os.FileMode, fill func(io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := fill(tmp); err != nil {
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(mode); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("install %s: %w", path, errors.Join(err, os.Remove(tmp.Name())))
	}
	return nil
}
