package kernelguest_test

import (
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/telcni/telcni/kernelguest"
)

// vethPair creates a veth pair nameA (in nsA) <-> nameB (in nsB).
func vethPair(t *testing.T, nsA netns.NsHandle, nameA string, nsB netns.NsHandle, nameB string) {
	t.Helper()
	h := kernelguest.Handle(t, nsA)
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: nameA},
		PeerName:      nameB,
		PeerNamespace: netlink.NsFd(nsB),
	}
	if err := h.LinkAdd(veth); err != nil {
		t.Fatalf("add veth %s/%s: %v", nameA, nameB, err)
	}
}

// addrUp puts prefix on the link name in ns and sets it up.
func addrUp(t *testing.T, ns netns.NsHandle, name, prefix string) {
	t.Helper()
	h := kernelguest.Handle(t, ns)
	link, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("find %s: %v", name, err)
	}
	addr, err := netlink.ParseAddr(prefix)
	if err != nil {
		t.Fatalf("parse %s: %v", prefix, err)
	}
	if err := h.AddrAdd(link, addr); err != nil {
		t.Fatalf("add %s to %s: %v", prefix, name, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		t.Fatalf("set %s up: %v", name, err)
	}
}

// linkUp sets the link name in ns up.
func linkUp(t *testing.T, ns netns.NsHandle, name string) {
	t.Helper()
	h := kernelguest.Handle(t, ns)
	link, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("find %s: %v", name, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		t.Fatalf("set %s up: %v", name, err)
	}
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
