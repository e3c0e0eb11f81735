package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The plugin runs once per CNI call: its start-up is on every pod's path.
// It must stay a thin forwarder, without the agent's heavy packages (and
// without net/http, whose initialisation was half its start-up).
func TestPluginStaysThin(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	forbidden := []string{"net/http", "crypto/tls", "github.com/vishvananda/netlink", "go.fd.io/govpp", "k8s.io/", "go.etcd.io/bbolt", "github.com/google/nftables"}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, f) && strings.HasSuffix(f, "/") || strings.HasPrefix(dep, f+"/") {
				t.Errorf("the plugin links %s (forbidden: %s)", dep, f)
			}
		}
	}
}
