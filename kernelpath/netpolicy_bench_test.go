package kernelpath

import (
	"fmt"
	"net/netip"
	"os"
	"testing"

	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/policy"
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
		var r policy.Rules
		r.Ingress.Isolated = true
		for i := range n[0] {
			peer := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 32)
			for j := range n[1] {
				r.Ingress.Allow = append(r.Ingress.Allow, policy.Rule{Peer: peer, Protocol: "udp", Port: uint16(7000 + j), EndPort: uint16(7000 + j)})
			}
		}
		b.Run(fmt.Sprintf("rules=%d", n[0]*n[1]), func(b *testing.B) {
			for b.Loop() {
				if err := ApplyNetworkPolicy(target, "net1", r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
