// Package testbin builds the programs a test package drives as a runtime
// would (the telcni plugin, the agent, reference CNI plugins), once per
// test binary, into a temporary directory removed when the tests end.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Plugins are the reference CNI plugins' import paths, by binary name.
const Plugins = "github.com/containernetworking/plugins/plugins/"

// Main builds pkgs (import path -> binary name) into a fresh directory,
// stores its path in *dir, runs the tests and exits with their status. A
// build failure names the package and exits 1.
func Main(m *testing.M, dir *string, pkgs map[string]string) {
	d, err := os.MkdirTemp("", "telcni-test-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*dir = d
	for pkg, name := range pkgs {
		cmd := exec.Command("go", "build", "-o", filepath.Join(d, name), pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // static, as `make build` ships them
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
			os.RemoveAll(d)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}
