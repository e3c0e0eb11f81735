package agent

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"

	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/policy"
)

// TestPolicyInterfacesAndEnforce: the ready interfaces are listed with
// their pod, network and generation; ADD and DEL tell the policy
// controller; EnforcePolicy reaches the kernel path under the attachment's
// lock (b's traffic into a stops, then passes again); an attachment gone
// meanwhile is no error; DEL leaves no policy chain behind.
func TestPolicyInterfacesAndEnforce(t *testing.T) {
	e := newEnv(t)
	changes := 0
	e.agent.OnAttachmentsChanged(func() { changes++ })
	a, b := e.pod("pol-a"), e.pod("pol-b")
	e.mustAdd(a, "eth0", podConf(`[{"name":"fronthaul","interface":"fh0","ips":["10.20.0.5/24"]}]`))
	e.mustAdd(b, "eth0", podConf(`[{"name":"fronthaul","interface":"fh0","ips":["10.20.0.6/24"]}]`))
	if changes != 2 {
		t.Errorf("%d change notifications after two ADDs", changes)
	}
	ctx := context.Background()
	ifs, err := e.agent.PolicyInterfaces(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var pa PolicyInterface
	for _, pi := range ifs {
		if pi.Pod.Name == "pol-a" {
			pa = pi
		}
	}
	if len(ifs) != 2 || pa.IfName != "fh0" || pa.Network != "fronthaul" || pa.Pod.Namespace != "ran" || pa.Generation == "" {
		t.Fatalf("policy interfaces %+v", ifs)
	}
	reach := func(wait time.Duration) bool {
		c, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		_, err := netnstest.UDPEcho(c, b.netns, a.netns, netip.MustParseAddr("10.20.0.5"))
		return err == nil
	}
	if !reach(5 * time.Second) {
		t.Fatal("no policy, yet b does not reach a")
	}
	if err := e.agent.EnforcePolicy(ctx, pa, policy.Rules{Ingress: policy.Direction{Isolated: true}}); err != nil {
		t.Fatal(err)
	}
	if reach(500 * time.Millisecond) {
		t.Error("a isolated for ingress with nothing allowed, yet b reaches it")
	}
	if err := e.agent.EnforcePolicy(ctx, pa, policy.Rules{}); err != nil {
		t.Fatal(err)
	}
	if !reach(2 * time.Second) {
		t.Error("a open again, yet b does not reach it")
	}
	if err := e.agent.EnforcePolicy(ctx, PolicyInterface{Attachment: "gone/eth0", IfName: "fh0"}, policy.Rules{Ingress: policy.Direction{Isolated: true}}); err != nil {
		t.Errorf("an attachment that is gone: %v", err)
	}
	if err := e.agent.EnforcePolicy(ctx, pa, policy.Rules{Egress: policy.Direction{Isolated: true}}); err != nil {
		t.Fatal(err)
	}
	if r := e.call("DEL", a, "eth0", podConf("")); r.Error != nil {
		t.Fatal(r.Error)
	}
	if changes != 3 {
		t.Errorf("%d change notifications after two ADDs and a DEL", changes)
	}
	h, err := netns.GetFromPath(a.netns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c, _ := nftables.New(nftables.WithNetNSFd(int(h)))
	if tables, _ := c.ListTables(); len(tables) != 0 {
		t.Errorf("nftables table left in the pod's netns after DEL")
	}
}

type fixedPolicies map[string]policy.Rules // by pod name

func (f fixedPolicies) RulesFor(_ context.Context, pi PolicyInterface) (policy.Rules, bool) {
	r, ok := f[pi.Pod.Name]
	return r, ok
}

// TestAddAppliesPolicyBeforeAnswering: with a policy source, ADD gives a
// selected interface its rules before it returns: the pod never runs open.
func TestAddAppliesPolicyBeforeAnswering(t *testing.T) {
	e := newEnv(t)
	e.agent.UsePolicies(fixedPolicies{"guarded": {Ingress: policy.Direction{Isolated: true}}})
	a, b := e.pod("guarded"), e.pod("peer")
	e.mustAdd(b, "eth0", podConf(`[{"name":"fronthaul","interface":"fh0","ips":["10.20.0.6/24"]}]`))
	e.mustAdd(a, "eth0", podConf(`[{"name":"fronthaul","interface":"fh0","ips":["10.20.0.5/24"]}]`))
	c, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := netnstest.UDPEcho(c, b.netns, a.netns, netip.MustParseAddr("10.20.0.5")); err == nil {
		t.Error("the guarded pod was reachable right after its ADD")
	}
	c2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if _, err := netnstest.UDPEcho(c2, a.netns, b.netns, netip.MustParseAddr("10.20.0.6")); err != nil {
		t.Errorf("the unguarded peer is not reachable: %v", err)
	}
}
