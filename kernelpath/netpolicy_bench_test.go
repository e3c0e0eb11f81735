package kernelpath

import (
	"fmt"
	"os"
	"testing"

	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/internal/policytest"
)

// BenchmarkApplyNetworkPolicy: replacing one interface's policy chains
// with 1, 100 and 1,000 rules (peers × UDP ports), one nftables
// transaction each, in a pod netns (the interface need not exist: chains
// match it by name).
func BenchmarkApplyNetworkPolicy(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: a network namespace and nftables")
	}
	ns := netnstest.New(b)
	target, _, done, err := PodNetns(ns)
	if err != nil {
		b.Fatal(err)
	}
	defer done()
	for _, n := range [][2]int{{1, 1}, {10, 10}, {100, 10}} {
		r := policytest.Ingress(n[0], n[1])
		b.Run(fmt.Sprintf("rules=%d", n[0]*n[1]), func(b *testing.B) {
			for b.Loop() {
				if err := ApplyNetworkPolicy(target, "net1", r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
