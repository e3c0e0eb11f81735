package vppagent

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/telcni/telcni/internal/policytest"
	"github.com/telcni/telcni/policy"
	"github.com/telcni/telcni/vppagent/vpptest"
)

// TestVPPNetworkPolicyACLs: MultiNetworkPolicy on memif interfaces of a
// network without firewall rules, on a real VPP with pod applications on
// the memifs. B's ingress admits only A: A's pings reach B, C's do not; B's
// own pings to C come back (replies of a flow B opened: permit+reflect).
// Replacing the policy (admit C, not A) keeps the ACL's index and turns
// the verdicts round; an open policy removes the ACLs; a reconcile (as
// after a VPP restart) re-applies the policy kept in the Manager.
func TestVPPNetworkPolicyACLs(t *testing.T) {
	v := vpptest.Start(t, vpptest.Options{})
	a := startAgent(t, v, nil, shortTemp(t))
	ctx := context.Background()
	recs := addABC(ctx, t, a, l2Net())
	p := startPods(t)
	pa := p.add(recs[0], "02:00:00:00:00:0a")
	pb := p.add(recs[1], "02:00:00:00:00:0b")
	pc := p.add(recs[2], "02:00:00:00:00:0c")
	mustPing(t, pa, pb.ip, pb.ip, 1, 10*time.Second)
	mustPing(t, pc, pb.ip, pb.ip, 2, 10*time.Second)

	admit := func(peer netip.Addr) policy.Rules {
		return policy.Rules{Ingress: policy.Direction{Isolated: true, Allow: []policy.Rule{{Peer: netip.PrefixFrom(peer, 32)}}}}
	}
	set := func(r policy.Rules) time.Duration {
		t.Helper()
		start := time.Now()
		if err := a.m.SetPolicy(ctx, recs[1].Spec.Key(), r); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	denied := func(from *podSim, seq uint16) bool {
		short, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		defer cancel()
		return from.ping(short, pb.ip, pb.ip, seq) != nil
	}
	aclIndex := regexp.MustCompile(`acl-index (\d+) .*telcni:acl:[0-9a-f]+:ingress`)

	took := set(admit(pa.ip))
	t.Logf("policy applied in %v", took)
	mustPing(t, pa, pb.ip, pb.ip, 3, 5*time.Second)
	if !denied(pc, 4) {
		t.Fatal("C's ping reached B, which admits only A")
	}
	mustPing(t, pb, pc.ip, pc.ip, 5, 5*time.Second) // B's own flow: the reply comes back
	before := aclIndex.FindStringSubmatch(v.MustCLI("show acl-plugin acl"))
	if before == nil {
		t.Fatalf("no ingress ACL of B:\n%s", v.MustCLI("show acl-plugin acl"))
	}

	took = set(admit(pc.ip))
	t.Logf("policy replaced in %v", took)
	mustPing(t, pc, pb.ip, pb.ip, 6, 5*time.Second)
	if !denied(pa, 7) {
		t.Error("A's ping reached B after the policy stopped admitting A")
	}
	if after := aclIndex.FindStringSubmatch(v.MustCLI("show acl-plugin acl")); after == nil || after[1] != before[1] {
		t.Errorf("the ACL was not replaced in place: index %v, then %v", before, after)
	}

	// A reconcile (VPP restarted, or drift: here B's ingress ACL unbound
	// by hand) re-applies the policy the Manager kept.
	c, err := a.m.conn.API()
	if err != nil {
		t.Fatal(err)
	}
	v.MustCLI("set acl-plugin interface " + ifName(t, a, recs[1]) + " output acl " + before[1] + " del")
	mustPing(t, pa, pb.ip, pb.ip, 10, 5*time.Second) // unbound: A passes
	if err := a.m.reconcile(ctx, &vpp{conn: c}); err != nil {
		t.Fatal(err)
	}
	if !denied(pa, 8) {
		t.Error("after a reconcile B's policy is no longer enforced")
	}

	set(policy.Rules{})
	mustPing(t, pa, pb.ip, pb.ip, 9, 5*time.Second)
	if acls := v.MustCLI("show acl-plugin acl"); strings.Contains(acls, "telcni:") {
		t.Errorf("ACLs left after the policy was removed from a network without firewall rules:\n%s", acls)
	}
}

// BenchmarkVPPSetPolicy: replacing one memif's policy ACL in place with 1,
// 100 and 1,000 rules (peers × UDP ports) on a real VPP.
func BenchmarkVPPSetPolicy(b *testing.B) {
	v := vpptest.Start(b, vpptest.Options{})
	a := startAgent(b, v, nil, shortTemp(b))
	ctx := context.Background()
	rec, err := a.m.Add(ctx, PodInterface{ContainerID: cidA, IfName: "fh0", Netns: newNetns(b), Network: l2Net(), IPs: []netip.Prefix{pfx("10.9.0.1/24")}})
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range [][2]int{{1, 1}, {10, 10}, {100, 10}} {
		r := policytest.Ingress(n[0], n[1])
		b.Run(fmt.Sprintf("rules=%d", n[0]*n[1]), func(b *testing.B) {
			for b.Loop() {
				if err := a.m.SetPolicy(ctx, rec.Spec.Key(), r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
