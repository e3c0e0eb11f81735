package kernelpath

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/internal/netnstest"
)

// A pod with two interfaces on one L2 segment (two networks on one NIC):
// a peer that talks to the pod's second address learns the second
// interface's MAC, not whichever interface answered first (ARP flux), and
// the pod interfaces carry arp_ignore 1 / arp_announce 2.
func TestNoARPFluxWithTwoInterfacesOnOneSegment(t *testing.T) {
	node, pod, peer := netnstest.New(t), netnstest.New(t), netnstest.New(t)
	netnstest.Uplink(t, node, "up0")
	p := newPath(t, node)
	ctx := context.Background()
	one, two := mustNet(t, `{"name":"one","path":"macvlan","master":"up0","ipam":{"subnets":[{"cidr":"10.51.0.0/24"}]}}`),
		mustNet(t, `{"name":"two","path":"macvlan","master":"up0","ipam":{"subnets":[{"cidr":"10.52.0.0/24"}]}}`)
	mk := func(n *api.Network, ns, cid, ifn, cidr string) *attach.Interface {
		t.Helper()
		r := &attach.Request{ContainerID: cid, Netns: ns, IfName: ifn, Network: n,
			IPs: []attach.IPConfig{{Address: netip.MustParsePrefix(cidr)}}}
		i, err := p.Attach(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	mk(one, pod, "pod", "a0", "10.51.0.10/24")
	b := mk(two, pod, "pod", "b0", "10.52.0.10/24")
	mk(two, peer, "peer", "p0", "10.52.0.20/24")
	// The peer asks for 10.52.0.10 and must hear b0.
	if _, err := netnstest.UDPEcho(ctx, peer, pod, netip.MustParseAddr("10.52.0.10")); err != nil {
		t.Fatalf("peer -> pod second address: %v", err)
	}
	neighs, err := netnstest.Handle(t, peer).NeighList(0, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, nb := range neighs {
		if nb.IP.String() == "10.52.0.10" {
			found = true
			if nb.HardwareAddr.String() != b.MAC {
				t.Errorf("the peer learned %s for 10.52.0.10, want b0's %s (ARP flux)", nb.HardwareAddr, b.MAC)
			}
		}
	}
	if !found {
		t.Fatal("the peer has no neighbour entry for 10.52.0.10")
	}
	err = netnstest.Do(pod, func() error {
		for _, ifn := range []string{"a0", "b0"} {
			for key, want := range map[string]string{"arp_ignore": "1", "arp_announce": "2"} {
				got, err := os.ReadFile("/proc/sys/net/ipv4/conf/" + ifn + "/" + key)
				if err != nil {
					return err
				}
				if strings.TrimSpace(string(got)) != want {
					t.Errorf("%s %s = %s, want %s", ifn, key, strings.TrimSpace(string(got)), want)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// An ADD interrupted after the link was made but before it got the pod's
// interface name leaves it under its temporary name; DEL (or the recovery
// of the pending record) removes it all the same.
func TestDetachFindsALinkLeftUnderItsTemporaryName(t *testing.T) {
	node, pod := netnstest.New(t), netnstest.New(t)
	netnstest.Uplink(t, node, "up0")
	p := newPath(t, node)
	n := mustNet(t, `{"name":"one","path":"macvlan","master":"up0","ipam":{"subnets":[{"cidr":"10.51.0.0/24"}]}}`)
	r := &attach.Request{ContainerID: "cid-interrupted", Netns: pod, IfName: "a0", Network: n}
	target, h, done, err := PodNetns(pod)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	if _, err := p.create(r, target, h); err != nil { // the ADD stops here
		t.Fatal(err)
	}
	if l := netnstest.Links(t, pod); len(l) != 1 || l[0] != tempName("cid-interrupted", "a0") {
		t.Fatalf("links %v, want only the temporary one", l)
	}
	if err := p.Detach(context.Background(), &attach.Record{Request: *r}); err != nil {
		t.Fatal(err)
	}
	if l := netnstest.Links(t, pod); len(l) != 0 {
		t.Errorf("left after Detach: %v", l)
	}
}
