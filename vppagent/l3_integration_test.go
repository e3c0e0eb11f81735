package vppagent

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.fd.io/govpp/binapi/arp"

	"github.com/telcni/telcni/vppagent/vpptest"
)

func TestVPPMemifL3RoutesPodToPod(t *testing.T) {
	v := vpptest.Start(t, vpptest.Options{})
	a := startAgent(t, v, nil, shortTemp(t))
	ctx := context.Background()
	n := Network{Name: "routed", Kind: KindMemif, L3: true}
	gw, gw6 := netip.MustParseAddr("10.70.0.1"), netip.MustParseAddr("fd00:70::1")
	add := func(cid, ip, ip6 string) *Record {
		r, err := a.m.Add(ctx, PodInterface{ContainerID: cid, IfName: "r0", Netns: newNetns(t), Network: n,
			IPs: []netip.Prefix{pfx(ip), pfx(ip6)}, Gateways: []netip.Addr{gw, gw6}})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	ra, rb := add(cidA, "10.70.0.5/24", "fd00:70::5/64"), add(cidB, "10.70.0.6/24", "fd00:70::6/64")
	fib := v.MustCLI("show ip fib 10.70.0.5/32")
	if !strings.Contains(fib, "10.70.0.5/32") {
		t.Errorf("no /32 route to pod A:\n%s", fib)
	}
	p := startPods(t)
	pa := p.add(ra, "02:00:00:00:70:05")
	pb := p.add(rb, "02:00:00:00:70:06")
	// Each pod resolves only its gateway (VPP answers for it) and VPP
	// routes between them.
	mustPing(t, pa, gw, pb.ip, 1, 15*time.Second)
	mustPing(t, pb, gw, pa.ip, 2, 15*time.Second)
	// IPv6: VPP answers neighbour solicitations for the gateway (ND proxy)
	// and routes the /128s.
	ctx6, cancel6 := context.WithTimeout(ctx, 15*time.Second)
	defer cancel6()
	if err := pa.ping6(ctx6, gw6, pb.ip6, 10); err != nil {
		for _, c := range []string{"show ip6 fib table 0", "show ip6 neighbors", "show errors", "show ip6 nd proxy"} {
			out, _ := v.CLI(c)
			t.Logf("%s:\n%s", c, out)
		}
		t.Fatalf("ping6 %s -> %s via %s: %v", pa.ip6, pb.ip6, gw6, err)
	}
	// Reconcile re-applies the configuration of existing interfaces; on a
	// healthy L3 network that must be harmless.
	if err := a.m.Reconcile(ctx); err != nil {
		t.Fatalf("reconcile of a healthy L3 network: %v", err)
	}
	mustPing(t, pa, gw, pb.ip, 3, 15*time.Second)
	for _, r := range []*Record{ra, rb} {
		if err := a.m.Del(ctx, r.Spec.Key()); err != nil {
			t.Fatal(err)
		}
	}
	if fib := v.MustCLI("show ip fib 10.70.0.5/32"); strings.Contains(fib, "10.70.0.5/32") {
		t.Errorf("route to pod A left after DEL:\n%s", fib)
	}
	if fib := v.MustCLI("show ip6 fib table 0"); strings.Contains(fib, "fd00:70::") {
		t.Errorf("IPv6 routes left after DEL:\n%s", fib)
	}
	if ifs, bds := telcniObjects(t, a); len(ifs)+len(bds) != 0 {
		t.Errorf("left after DEL: %v %v", ifs, bds)
	}
	c, err := a.m.conn.API()
	if err != nil {
		t.Fatal(err)
	}
	s, err := arp.NewServiceClient(c).ProxyArpDump(ctx, &arp.ProxyArpDump{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		d, err := s.Recv()
		if err != nil {
			break
		}
		t.Errorf("proxy ARP range left after the network's last DEL: %+v", d.Proxy)
	}
}
