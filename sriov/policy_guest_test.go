package sriov

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/policy"
)

// TestKernelVFNetworkPolicy: a MultiNetworkPolicy on a kernel VF (igbvf in
// the guest) is enforced in the pod's netns as on the kernel paths: a peer
// the policy does not admit is dropped, the admitted one passes, an open
// policy lifts the isolation, and a DPDK VF refuses an isolating policy.
func TestKernelVFNetworkPolicy(t *testing.T) {
	pf, _ := guestPF(t, 2)
	p := newPath(t)
	n := &api.Network{Name: "fh", Path: api.PathSRIOV, Master: pf.Name}
	if err := n.Validate(); err != nil {
		t.Fatal(err)
	}
	nsA, nsB := netnstest.New(t), netnstest.New(t)
	reqA, reqB := request(n, nsA, "ctr-a", "192.0.2.1/24", ""), request(n, nsB, "ctr-b", "192.0.2.2/24", "")
	a, err := p.Attach(ctx(t), reqA)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Attach(ctx(t), reqB)
	if err != nil {
		t.Fatal(err)
	}
	recA, recB := &attach.Record{Request: *reqA, Interface: *a}, &attach.Record{Request: *reqB, Interface: *b}
	defer p.Detach(context.Background(), recA)
	echo := func(d time.Duration) error {
		c, cancel := context.WithTimeout(ctx(t), d)
		defer cancel()
		_, err := netnstest.UDPEcho(c, nsA, nsB, netip.MustParseAddr("192.0.2.2"))
		return err
	}
	if err := echo(20 * time.Second); err != nil { // the VFs' links come up
		t.Fatalf("A -> B before any policy: %v", err)
	}
	admit := func(peer string) policy.Rules {
		return policy.Rules{Ingress: policy.Direction{Isolated: true, Allow: []policy.Rule{{Peer: netip.MustParsePrefix(peer), Protocol: "udp"}}}}
	}
	enforce := func(r policy.Rules) {
		t.Helper()
		if err := p.EnforcePolicy(ctx(t), recB, r); err != nil {
			t.Fatal(err)
		}
	}
	enforce(admit("192.0.2.9/32"))
	if err := echo(time.Second); err == nil {
		t.Fatal("A reached B although B's policy admits only 192.0.2.9")
	}
	enforce(admit("192.0.2.1/32"))
	if err := echo(5 * time.Second); err != nil {
		t.Fatalf("A -> B with A admitted: %v", err)
	}
	enforce(admit("192.0.2.9/32"))
	if err := echo(time.Second); err == nil {
		t.Fatal("A still reaches B after the policy stopped admitting it")
	}
	enforce(policy.Rules{})
	if err := echo(5 * time.Second); err != nil {
		t.Fatalf("A -> B after the policy was lifted: %v", err)
	}
	// DEL takes the policy chains with the interface (the VF returns to
	// the host clean), and a DPDK VF cannot be isolated.
	enforce(admit("192.0.2.9/32"))
	if err := p.Detach(ctx(t), recB); err != nil {
		t.Fatal(err)
	}
	if !nftTableGone(t, nsB) {
		t.Error("the pod's nftables table is left after DEL of its only interface")
	}
	dpdk := &attach.Record{Request: attach.Request{ContainerID: "ctr-d", IfName: "net1", Network: &api.Network{Name: "fh", Path: api.PathSRIOVDPDK, Master: pf.Name}}}
	if err := p.EnforcePolicy(ctx(t), dpdk, admit("192.0.2.9/32")); err == nil || !strings.Contains(err.Error(), "cannot enforce") {
		t.Errorf("isolating policy on a DPDK VF: %v", err)
	}
	if err := p.EnforcePolicy(ctx(t), dpdk, policy.Rules{}); err != nil {
		t.Errorf("open policy on a DPDK VF: %v", err)
	}
}

func nftTableGone(t *testing.T, ns string) bool {
	fd := netnstest.Fd(t, ns)
	c, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTables()
	return err == nil && len(tables) == 0
}
