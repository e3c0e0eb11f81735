package netnstest

import (
	"net"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Wire creates a veth pair: name (up) in netns a, and name+"p" (up) in netns
// b carrying the addresses peerAddrs. It models a node NIC (in a) cabled to
// a router or host (b).
func Wire(t testing.TB, a, b, name string, peerAddrs ...string) {
	t.Helper()
	ha, hb := Handle(t, a), Handle(t, b)
	nsB, err := netns.GetFromPath(b)
	if err != nil {
		t.Fatal(err)
	}
	defer nsB.Close()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: 1500}, PeerName: name + "p", PeerNamespace: netlink.NsFd(int(nsB))}
	if err := ha.LinkAdd(v); err != nil {
		t.Fatalf("create veth %s: %v", name, err)
	}
	la, err := ha.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := ha.LinkSetUp(la); err != nil {
		t.Fatal(err)
	}
	lb, err := hb.LinkByName(name + "p")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range peerAddrs {
		addAddr(t, hb, lb, s)
	}
	if err := hb.LinkSetUp(lb); err != nil {
		t.Fatal(err)
	}
}

// AddrOnLo puts an address on lo in the netns at path (a host "behind" a
// router, without needing a dummy device) and brings lo up.
func AddrOnLo(t testing.TB, path, cidr string) { AddrUp(t, path, "lo", cidr) }

// AddrUp puts cidr on the link name in the netns at path and brings it up.
func AddrUp(t testing.TB, path, name, cidr string) {
	t.Helper()
	h := Handle(t, path)
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("find %s: %v", name, err)
	}
	addAddr(t, h, l, cidr)
	if err := h.LinkSetUp(l); err != nil {
		t.Fatalf("set %s up: %v", name, err)
	}
}

// addAddr puts cidr on l, without duplicate address detection so that it
// is usable at once.
func addAddr(t testing.TB, h *netlink.Handle, l netlink.Link, cidr string) {
	t.Helper()
	addr, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	addr.Flags = 0x80 // IFA_F_NODAD
	if err := h.AddrAdd(l, addr); err != nil {
		t.Fatalf("add %s to %s: %v", cidr, l.Attrs().Name, err)
	}
}

// Fd opens the netns at path for calls that take a namespace fd (moving a
// link, an nftables connection); it is closed when the test ends.
func Fd(t testing.TB, path string) int {
	t.Helper()
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatalf("open netns %s: %v", path, err)
	}
	t.Cleanup(func() { ns.Close() })
	return int(ns)
}

// Route adds a route in the netns at path: dst via gw.
func Route(t testing.TB, path, dst, gw string) {
	t.Helper()
	h := Handle(t, path)
	_, d, err := net.ParseCIDR(dst)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.RouteAdd(&netlink.Route{Dst: d, Gw: net.ParseIP(gw)}); err != nil {
		t.Fatalf("route %s via %s: %v", dst, gw, err)
	}
}

// Links lists the names of the links in the netns at path, lo left out.
func Links(t testing.TB, path string) []string {
	t.Helper()
	ls, err := Handle(t, path).LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		if l.Attrs().Name != "lo" {
			out = append(out, l.Attrs().Name)
		}
	}
	return out
}
