package policy

import (
	"fmt"
	"net/netip"
	"testing"
)

// benchInput is a world where one policy admits peers × ports on net1 to
// pod app/server: peers pods labelled role=client, each with one address.
func benchInput(peers, ports int) (*Input, Target) {
	in := &Input{Namespaces: map[string]map[string]string{"app": {}}}
	server := &Pod{Namespace: "app", Name: "server", Labels: map[string]string{"role": "server"},
		Addrs: map[string][]netip.Addr{"app/net1": {netip.MustParseAddr("10.0.0.1")}}}
	in.Pods = append(in.Pods, server)
	for i := range peers {
		a := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		in.Pods = append(in.Pods, &Pod{Namespace: "app", Name: fmt.Sprintf("client-%d", i), Labels: map[string]string{"role": "client"},
			Addrs: map[string][]netip.Addr{"app/net1": {a}}})
	}
	y := `{"metadata":{"name":"bench","namespace":"app","annotations":{"k8s.v1.cni.cncf.io/policy-for":"net1"}},
	"spec":{"podSelector":{"matchLabels":{"role":"server"}},"ingress":[{"from":[{"podSelector":{"matchLabels":{"role":"client"}}}],"ports":[`
	for i := range ports {
		if i > 0 {
			y += ","
		}
		y += fmt.Sprintf(`{"protocol":"UDP","port":%d}`, 7000+i)
	}
	y += `]}]}}`
	var p MultiNetworkPolicy
	if err := unmarshal([]byte(y), &p); err != nil {
		panic(err) // a constant document: only a broken edit of it gets here
	}
	in.Policies = []*MultiNetworkPolicy{&p}
	return in, Target{Pod: server, Network: "app/net1"}
}

// BenchmarkCompile: one interface's rules from 1, 100 and 1,000 peer ×
// port combinations (rules/op is what it produced).
func BenchmarkCompile(b *testing.B) {
	for _, n := range [][2]int{{1, 1}, {10, 10}, {100, 10}} {
		in, t := benchInput(n[0], n[1])
		b.Run(fmt.Sprintf("rules=%d", n[0]*n[1]), func(b *testing.B) {
			var r Rules
			for b.Loop() {
				r, _ = NewIndex(in).Compile(t)
			}
			b.ReportMetric(float64(len(r.Ingress.Allow)), "rules/op")
		})
	}
}
