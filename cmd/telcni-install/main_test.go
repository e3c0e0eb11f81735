package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInstall(t *testing.T) {
	src, bin, conf := t.TempDir(), t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "telcni"), []byte("#!/bin/sh\necho plugin\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(conf, "10-other.conflist")
	if err := os.WriteFile(other, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-src-dir", src, "-bin-dir", bin, "-conf-dir", conf, "-default-network", "oam"}
	for range 2 { // idempotent
		if err := run(args); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(filepath.Join(bin, "telcni"))
	if err != nil || fi.Mode().Perm() != 0o755 || fi.Size() == 0 {
		t.Fatalf("plugin binary: %v %v", fi, err)
	}
	var cl struct {
		CNIVersion string           `json:"cniVersion"`
		Name       string           `json:"name"`
		Plugins    []map[string]any `json:"plugins"`
	}
	b, err := os.ReadFile(filepath.Join(conf, "00-telcni.conflist"))
	if err != nil || json.Unmarshal(b, &cl) != nil || cl.Name != "telcni" || len(cl.Plugins) != 1 ||
		cl.Plugins[0]["type"] != "telcni" || cl.Plugins[0]["defaultNetwork"] != "oam" {
		t.Fatalf("conflist %s: %v", b, err)
	}
	for _, d := range []string{bin, conf} {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if strings.Contains(e.Name(), ".tmp-") {
				t.Errorf("temporary file left: %s", e.Name())
			}
		}
	}
	if b, _ := os.ReadFile(other); string(b) != "{}" {
		t.Error("another plugin's conflist was touched")
	}
	// A target that cannot be written: the error names it.
	ro := filepath.Join(t.TempDir(), "missing", "dir")
	err = run([]string{"-src-dir", src, "-bin-dir", ro, "-conf-dir", conf})
	if err == nil || !strings.Contains(err.Error(), ro) {
		t.Fatalf("unwritable bin dir: %v, want it named", err)
	}
	if err := run([]string{"-src-dir", t.TempDir(), "-bin-dir", bin, "-conf-dir", conf}); err == nil || !strings.Contains(err.Error(), "plugin binary") {
		t.Fatalf("no binary to install: %v", err)
	}
}
