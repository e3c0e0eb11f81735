package agent

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/policy"
	"github.com/telcni/telcni/vppagent/vpptest"
)

// TestVPPPolicyThroughAgent: the agent hands a memif's policy to VPP as
// ACLs, at ADD (UsePolicies) and afterwards (EnforcePolicy); an open
// policy removes them; DEL leaves none.
func TestVPPPolicyThroughAgent(t *testing.T) {
	v := vpptest.Start(t, vpptest.Options{})
	a, m := vppAgent(t, v.APISocket)
	waitVPP(t, m)
	isolated := policy.Rules{Ingress: policy.Direction{Isolated: true, Allow: []policy.Rule{
		{Peer: netip.MustParsePrefix("10.61.0.9/32"), Protocol: "udp", Port: 2152, EndPort: 2152}}}}
	a.UsePolicies(fixedPolicies{"du-0": isolated})
	netns := netnstest.New(t)
	if r := dispatch(a, "ADD", "cid-pol", netns, "net1", fastConf); r.Error != nil {
		t.Fatalf("ADD: %+v", r.Error)
	}
	acls := func() int { return strings.Count(v.MustCLI("show acl-plugin acl"), "telcni:acl:") }
	if n := acls(); n != 2 {
		t.Fatalf("%d telcni ACLs after an ADD a policy isolates, want 2 (ingress and egress):\n%s", n, v.MustCLI("show acl-plugin acl"))
	}
	if out := v.MustCLI("show acl-plugin acl"); !strings.Contains(out, "10.61.0.9/32") || !strings.Contains(out, "2152") {
		t.Errorf("the policy's peer and port are not in VPP's ACL:\n%s", out)
	}
	ifs, err := a.PolicyInterfaces(context.Background())
	if err != nil || len(ifs) != 1 {
		t.Fatalf("policy interfaces %+v: %v", ifs, err)
	}
	if err := a.EnforcePolicy(context.Background(), ifs[0], policy.Rules{}); err != nil {
		t.Fatal(err)
	}
	if n := acls(); n != 0 {
		t.Errorf("%d telcni ACLs after the policy was lifted from a network without firewall rules", n)
	}
	if err := a.EnforcePolicy(context.Background(), ifs[0], isolated); err != nil {
		t.Fatal(err)
	}
	if r := dispatch(a, "DEL", "cid-pol", netns, "net1", fastConf); r.Error != nil {
		t.Fatalf("DEL: %+v", r.Error)
	}
	if n := acls(); n != 0 {
		t.Errorf("%d telcni ACLs after DEL", n)
	}
}
