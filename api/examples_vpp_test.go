package api

import (
	"os"
	"path/filepath"
	"testing"
)

// The VPP example networks under deploy/vpp/examples must stay valid.
func TestVPPExampleNetworks(t *testing.T) {
	files, _ := filepath.Glob("../deploy/vpp/examples/*.json")
	if len(files) == 0 {
		t.Skip("no example networks")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseNetwork(b); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
