package vppagent

import (
	"context"
	"net/netip"
	"testing"

	"go.fd.io/govpp/binapi/acl_types"

	"github.com/telcni/telcni/policy"
)

// TestPodACL: the firewall's rules first, then the policy's; an isolated
// direction ends with VPP's implicit deny (no permit-any), an open one
// with permit-any; every permit is permit+reflect once a policy isolates;
// an open policy leaves the firewall's ACL exactly as before.
func TestPodACL(t *testing.T) {
	fw := []FirewallRule{{Direction: "ingress", Drop: true, Protocol: "udp", Ports: []int{9}}}
	if got, want := podACL(fw, policy.Rules{}, "ingress"), aclRules(fw, "ingress"); len(got) != len(want) || got[len(got)-1].IsPermit != acl_types.ACL_ACTION_API_PERMIT {
		t.Fatalf("open policy: %d rules, want the firewall's %d", len(got), len(want))
	}
	pol := policy.Rules{Ingress: policy.Direction{Isolated: true, Allow: []policy.Rule{
		{Peer: netip.MustParsePrefix("10.0.0.2/32"), Protocol: "sctp", Port: 38412, EndPort: 38412},
		{Protocol: "udp", Port: 5000, EndPort: 5010},
	}}}
	in := podACL(fw, pol, "ingress")
	// drop udp/9 ×2 families, ND, sctp peer, udp range ×2 families.
	if len(in) != 6 {
		t.Fatalf("ingress ACL has %d rules, want 6: %+v", len(in), in)
	}
	if in[0].IsPermit != acl_types.ACL_ACTION_API_DENY || in[2].SrcportOrIcmptypeFirst != 133 {
		t.Errorf("order: firewall first, then neighbour discovery: %+v", in[:3])
	}
	if r := in[3]; r.IsPermit != acl_types.ACL_ACTION_API_PERMIT_REFLECT || r.DstportOrIcmpcodeFirst != 38412 ||
		r.DstportOrIcmpcodeLast != 38412 || r.SrcPrefix.Len != 32 {
		t.Errorf("peer rule: %+v", r)
	}
	if r := in[4]; r.DstportOrIcmpcodeFirst != 5000 || r.DstportOrIcmpcodeLast != 5010 || r.SrcPrefix.Len != 0 {
		t.Errorf("range rule: %+v", r)
	}
	out := podACL(nil, pol, "egress")
	if len(out) != 2 || out[0].IsPermit != acl_types.ACL_ACTION_API_PERMIT_REFLECT {
		t.Errorf("open egress beside an isolated ingress: %+v, want permit+reflect any", out)
	}
}

// After an agent restart, VPP's reconcile keeps a pod's ACLs as the earlier
// agent left them, policy included, instead of rebuilding them from the
// firewall alone (which opened the pod until the policy controller's first
// pass); the first SetPolicy then rewrites them, even to the firewall
// alone.
func TestRestartKeepsPolicyACLsUntilPolicyKnown(t *testing.T) {
	f := newFakeVPP()
	dir := t.TempDir()
	ctx := context.Background()
	fw := []FirewallRule{{Direction: "ingress", Drop: true, Protocol: "udp", Ports: []int{9}}}
	spec := PodInterface{ContainerID: cidA, IfName: "fh0", Netns: "/var/run/netns/pod-a",
		Network: Network{Name: "fh", Kind: KindMemif, Firewall: fw}}
	m := fakeManager(f, dir)
	if _, err := m.Add(ctx, spec); err != nil {
		t.Fatal(err)
	}
	pol := policy.Rules{Ingress: policy.Direction{Isolated: true, Allow: []policy.Rule{{Peer: netip.MustParsePrefix("10.0.0.2/32")}, {Peer: netip.MustParsePrefix("10.0.0.3/32")}, {Peer: netip.MustParsePrefix("10.0.0.4/32")}}}}
	if err := m.SetPolicy(ctx, spec.Key(), pol); err != nil {
		t.Fatal(err)
	}
	ingress := func() int {
		for idx, tag := range f.acls {
			if tag == aclTag(spec.Tag(), "ingress") {
				return f.rules[idx]
			}
		}
		return -1
	}
	withPolicy, firewallOnly := len(podACL(fw, pol, "ingress")), len(podACL(fw, policy.Rules{}, "ingress"))
	if withPolicy == firewallOnly {
		t.Fatal("the test needs the policy to change the ACL's length")
	}
	if n := ingress(); n != withPolicy {
		t.Fatalf("ingress ACL has %d rules with the policy, want %d", n, withPolicy)
	}
	// The agent restarts; VPP keeps running.
	m2 := fakeManager(f, dir, spec)
	if n := ingress(); n != withPolicy {
		t.Fatalf("after the agent's restart the reconcile rebuilt the ingress ACL to %d rules (firewall alone: %d); want it kept at %d until the policy is known", n, firewallOnly, withPolicy)
	}
	if err := m2.SetPolicy(ctx, spec.Key(), policy.Rules{}); err != nil {
		t.Fatal(err)
	}
	if n := ingress(); n != firewallOnly {
		t.Fatalf("the policy was deleted while the agent was down: ingress ACL has %d rules, want the firewall's %d", n, firewallOnly)
	}
}
