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
	a := startAgent(t, v, recDir(t), shortTemp(t))
	ctx := context.Background()
	n := Network{Name: "routed", Kind: KindMemif, L3: true}
	gw := netip.MustParseAddr("10.70.0.1")
	add := func(cid, ip string) *Record {
		r, err := a.m.Add(ctx, PodInterface{ContainerID: cid, IfName: "r0", Netns: newNetns(t), Network: n,
			IPs: []netip.Prefix{pfx(ip)}, Gateways: []netip.Addr{gw}})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	ra, rb := add(cidA, "10.70.0.5/24"), add(cidB, "10.70.0.6/24")
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
