package kernelpath

import (
	"context"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/internal/sctptest"
	"github.com/telcni/telcni/kernelguest"
	"github.com/telcni/telcni/policy"
)

// TestGuestNetworkPolicySCTP: a MultiNetworkPolicy admitting SCTP 38412
// (NGAP) from the AMF's address lets its association in and its replies
// out; replaced by one that no longer admits that address, the running
// association's next message is dropped (SCTP is judged per packet in its
// original direction, as TCP and UDP are). The host kernel has no SCTP:
// this runs in the kernel guest.
func TestGuestNetworkPolicySCTP(t *testing.T) {
	kernelguest.Require(t)
	node, amf, pod := netnstest.New(t), netnstest.New(t), netnstest.New(t)
	netnstest.Wire(t, node, amf, "up0", "10.93.0.1/24")
	p := newPath(t, node)
	if !nftablesWorks(t, pod) {
		t.Fatal("the guest kernel has no nf_tables")
	}
	req := &attach.Request{ContainerID: "gnb", Netns: pod, IfName: "n2", Network: mustNet(t,
		`{"name":"n2","path":"macvlan","master":"up0","ipam":{"subnets":[{"cidr":"10.93.0.0/24"}]}}`),
		IPs: []attach.IPConfig{{Address: netip.MustParsePrefix("10.93.0.10/24")}}}
	if _, err := p.Attach(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	admit := func(peer string) policy.Rules {
		return policy.Rules{Ingress: policy.Direction{Isolated: true, Allow: []policy.Rule{
			{Peer: netip.MustParsePrefix(peer), Protocol: "sctp", Port: 38412, EndPort: 38412}}}}
	}
	apply := func(r policy.Rules) {
		t.Helper()
		if err := ApplyNetworkPolicy(mustNS(t, pod), "n2", r); err != nil {
			t.Fatal(err)
		}
	}
	apply(admit("10.93.0.1/32"))
	one := func(s string) []netip.Addr { return []netip.Addr{netip.MustParseAddr(s)} }
	l, err := sctptest.Listen(pod, one("10.93.0.10"), 38412)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(l)
	c, err := sctptest.Dial(amf, one("10.93.0.1"), one("10.93.0.10"), 38412)
	if err != nil {
		t.Fatalf("an admitted SCTP association was not set up: %v", err)
	}
	defer unix.Close(c)
	s, err := sctptest.Accept(l)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(s)
	if err := sctptest.Exchange(c, s, "NG Setup Request"); err != nil {
		t.Fatalf("admitted SCTP into the pod: %v", err)
	}
	if err := sctptest.Exchange(s, c, "NG Setup Response"); err != nil {
		t.Fatalf("the pod's reply on an admitted association: %v", err)
	}
	apply(admit("10.93.0.99/32"))
	if err := sctptest.Exchange(c, s, "after the policy changed"); err == nil {
		t.Fatal("the association still carries data after the policy stopped admitting its peer")
	}
}
