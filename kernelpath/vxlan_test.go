package kernelpath

import (
	"context"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/kernelguest"
)

// underlay connects two node namespaces with a veth pair "ul0" carrying
// 192.168.77.1/24 and .2/24: the host-to-host network VXLAN rides on.
func underlay(t *testing.T, nodeA, nodeB string) {
	t.Helper()
	ha, hb := netnstest.Handle(t, nodeA), netnstest.Handle(t, nodeB)
	nsB, err := netns.GetFromPath(nodeB)
	if err != nil {
		t.Fatal(err)
	}
	defer nsB.Close()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ul0", MTU: 1500}, PeerName: "ul0b", PeerNamespace: netlink.NsFd(int(nsB))}
	if err := ha.LinkAdd(v); err != nil {
		t.Fatal(err)
	}
	for i, h := range []*netlink.Handle{ha, hb} {
		name := []string{"ul0", "ul0b"}[i]
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			_ = h.LinkSetName(l, "ul0")
		}
		addr, _ := netlink.ParseAddr([]string{"192.168.77.1/24", "192.168.77.2/24"}[i])
		if err := h.AddrAdd(l, addr); err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
}

func vxlanNet(t *testing.T, mode string) *api.Network {
	t.Helper()
	n, err := api.ParseNetwork([]byte(`{"name":"ctr-internal","path":"vxlan","mode":"` + mode + `",
		"vxlan":{"vni":42,"group":"239.1.1.42","device":"ul0"},
		"ipam":{"subnets":[{"cidr":"10.42.0.0/24"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestVXLANBetweenTwoHosts(t *testing.T) {
	for _, mode := range []string{"macvlan", "ipvlan", "direct"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "ipvlan" && !kernelguest.InGuest() {
				t.Skip("ipvlan is not in this host kernel: " + kernelguest.SkipMessage)
			}
			nodeA, nodeB := netnstest.New(t), netnstest.New(t)
			underlay(t, nodeA, nodeB)
			pa, pb := newPath(t, nodeA), newPath(t, nodeB)
			podA, podB := netnstest.New(t), netnstest.New(t)
			n := vxlanNet(t, mode)
			ctx := context.Background()
			ra := &attach.Request{ContainerID: "vxA", Netns: podA, IfName: "ci0", Network: n,
				IPs: []attach.IPConfig{{Address: netip.MustParsePrefix("10.42.0.10/24")}}}
			rb := &attach.Request{ContainerID: "vxB", Netns: podB, IfName: "ci0", Network: n,
				IPs: []attach.IPConfig{{Address: netip.MustParsePrefix("10.42.0.20/24")}}}
			ia, err := pa.Attach(ctx, ra)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := pb.Attach(ctx, rb); err != nil {
				t.Fatal(err)
			}
			if ia.MTU != 1450 {
				t.Errorf("pod MTU %d, want 1450 (underlay 1500 - 50)", ia.MTU)
			}
			src, err := netnstest.UDPEcho(ctx, podA, podB, netip.MustParseAddr("10.42.0.20"))
			if err != nil {
				t.Fatalf("pod on host A -> pod on host B over VXLAN: %v", err)
			}
			if src.String() != "10.42.0.10" {
				t.Errorf("source seen %s, want 10.42.0.10 (no NAT)", src)
			}
			hostLinks := func(node string) []string {
				var out []string
				ls, _ := netnstest.Handle(t, node).LinkList()
				for _, l := range ls {
					if l.Attrs().Alias == HostAlias {
						out = append(out, l.Attrs().Name)
					}
				}
				return out
			}
			if got := hostLinks(nodeA); mode == "direct" && len(got) != 0 || mode != "direct" && (len(got) != 1 || got[0] != "vx42") {
				t.Errorf("host links on node A: %v", got)
			}
			if err := pa.Detach(ctx, &attach.Record{Request: *ra, Interface: *ia}); err != nil {
				t.Fatal(err)
			}
			// The network is gone and no pod uses it: the host link goes.
			if err := pa.SyncHostLinks(ctx, func() ([]*api.Network, error) { return nil, nil }); err != nil {
				t.Fatal(err)
			}
			if got := hostLinks(nodeA); len(got) != 0 {
				t.Errorf("host links left after sync: %v", got)
			}
		})
	}
}

func TestSyncHostLinksCreatesSharesAndSparesOperatorLinks(t *testing.T) {
	node := netnstest.New(t)
	netnstest.Uplink(t, node, "ul0")
	p := newPath(t, node)
	ctx := context.Background()
	n := vxlanNet(t, "macvlan")
	n.VXLAN.Group = ""
	n.VXLAN.Remote = "192.168.77.2"
	other := vxlanNet(t, "macvlan")
	other.Name, other.VXLAN.VNI, other.VXLAN.Group = "other", 43, ""
	// An operator's own link that happens to look like ours: never removed.
	h := netnstest.Handle(t, node)
	if err := h.LinkAdd(&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "vx99"}, VxlanId: 99, Port: 4789}); err != nil {
		t.Fatal(err)
	}
	want := []*api.Network{n, other}
	if err := p.SyncHostLinks(ctx, func() ([]*api.Network, error) { return want, nil }); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"vx42", "vx43", "vx99"} {
		if _, err := h.LinkByName(name); err != nil {
			t.Errorf("%s missing after sync: %v", name, err)
		}
	}
	l, _ := h.LinkByName("vx42")
	if l.Attrs().MTU != 1450 || l.Attrs().Flags&1 == 0 {
		t.Errorf("vx42 mtu %d flags %v", l.Attrs().MTU, l.Attrs().Flags)
	}
	// A definition that contradicts the existing link is refused by name.
	clash := vxlanNet(t, "macvlan")
	clash.VXLAN.Group, clash.VXLAN.Remote = "", "192.168.77.9"
	if err := p.SyncHostLinks(ctx, func() ([]*api.Network, error) { return []*api.Network{clash, other}, nil }); err == nil {
		t.Error("sync accepted a definition that contradicts vx42")
	}
	if err := p.SyncHostLinks(ctx, func() ([]*api.Network, error) { return []*api.Network{other}, nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := h.LinkByName("vx42"); err == nil {
		t.Error("vx42 kept although no network wants it")
	}
	if _, err := h.LinkByName("vx99"); err != nil {
		t.Error("the operator's vx99 was removed")
	}
}
