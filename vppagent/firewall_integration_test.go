package vppagent

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/telcni/telcni/vppagent/vpptest"
)

// TestVPPFirewallACLs: a network rule "ingress drop icmp from 10.9.0.1"
// becomes VPP ACLs on every pod interface: pod A's pings are dropped on
// their way into pod B, while B and C, not matched, still ping each other.
// DEL removes the ACLs; an ACL nobody owns is removed by reconcile.
func TestVPPFirewallACLs(t *testing.T) {
	v := vpptest.Start(t, vpptest.Options{})
	a := startAgent(t, v, nil, shortTemp(t))
	ctx := context.Background()
	n := l2Net()
	n.Firewall = []FirewallRule{{Direction: "ingress", Drop: true, Protocol: "icmp", CIDR: pfx("10.9.0.1/32")}}
	recs := addABC(ctx, t, a, n)
	if acls := v.MustCLI("show acl-plugin acl"); strings.Count(acls, "telcni:") != 3 {
		t.Fatalf("want one ingress ACL per pod interface:\n%s", acls)
	}
	before := v.MustCLI("show acl-plugin acl")
	// A reconcile re-applies the ACLs in place: same ACLs, same indexes,
	// bound throughout.
	for _, r := range recs {
		c, err := a.m.conn.API()
		if err != nil {
			t.Fatal(err)
		}
		if err := a.m.applyFirewall(ctx, &vpp{conn: c}, r); err != nil {
			t.Fatal(err)
		}
	}
	if after := v.MustCLI("show acl-plugin acl"); after != before {
		t.Errorf("re-applying the firewall changed the ACLs:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	p := startPods(t)
	pa := p.add(recs[0], "02:00:00:00:00:0a")
	pb := p.add(recs[1], "02:00:00:00:00:0b")
	pc := p.add(recs[2], "02:00:00:00:00:0c")
	mustPing(t, pb, pc.ip, pc.ip, 1, 10*time.Second)
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := pa.ping(short, pb.ip, pb.ip, 2); err == nil {
		t.Fatal("pod A's ping reached pod B despite the drop rule")
	}

	// An ACL with telcni's tag that no record owns goes at reconcile.
	v.MustCLI("set acl-plugin acl deny tag telcni:acl:00000000deadbeef:ingress")
	for _, r := range recs {
		if err := a.m.Del(ctx, r.Spec.Key()); err != nil {
			t.Fatal(err)
		}
	}
	if acls := v.MustCLI("show acl-plugin acl"); strings.Contains(acls, "telcni:") {
		t.Errorf("ACLs left after DEL and reconcile:\n%s", acls)
	}
}
