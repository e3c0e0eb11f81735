// Package policytest builds MultiNetworkPolicy rule sets for tests and
// benchmarks.
package policytest

import (
	"net/netip"

	"github.com/telcni/telcni/policy"
)

// Ingress is an isolated ingress that admits peers hosts (10.1.0.0,
// 10.1.0.1, ...) on ports UDP ports each (7000, 7001, ...): peers × ports
// rules, the shape pod selectors compile to.
func Ingress(peers, ports int) policy.Rules {
	var r policy.Rules
	r.Ingress.Isolated = true
	for i := range peers {
		peer := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 32)
		for j := range ports {
			r.Ingress.Allow = append(r.Ingress.Allow, policy.Rule{Peer: peer, Protocol: "udp", Port: uint16(7000 + j), EndPort: uint16(7000 + j)})
		}
	}
	return r
}
