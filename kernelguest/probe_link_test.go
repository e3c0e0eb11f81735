package kernelguest_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/kernelguest"
)

// udpEcho is a datagram there and back from fromNS to to (in toNS) within
// timeout.
func udpEcho(fromNS, toNS, to string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := netnstest.UDPEchoPort(ctx, fromNS, toNS, netip.MustParseAddrPort(to))
	return err
}

// An ipvlan L2 pair on one parent, each slave in its own netns, passes traffic.
func TestProbeIPVLANL2(t *testing.T) {
	kernelguest.Require(t)
	nsP, nsA, nsB := netnstest.New(t), netnstest.New(t), netnstest.New(t)
	hP := netnstest.Handle(t, nsP)
	if err := hP.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "parent0"}}); err != nil {
		t.Fatalf("add dummy parent: %v", err)
	}
	parent, err := hP.LinkByName("parent0")
	if err != nil {
		t.Fatalf("find parent: %v", err)
	}
	if err := hP.LinkSetUp(parent); err != nil {
		t.Fatalf("set parent up: %v", err)
	}
	for _, s := range []struct{ name, ns string }{{"ipvl0", nsA}, {"ipvl1", nsB}} {
		iv := &netlink.IPVlan{
			LinkAttrs: netlink.LinkAttrs{Name: s.name, ParentIndex: parent.Attrs().Index},
			Mode:      netlink.IPVLAN_MODE_L2,
		}
		if err := hP.LinkAdd(iv); err != nil {
			t.Fatalf("add ipvlan %s: %v", s.name, err)
		}
		if err := hP.LinkSetNsFd(iv, netnstest.Fd(t, s.ns)); err != nil {
			t.Fatalf("move %s into its netns: %v", s.name, err)
		}
	}
	netnstest.AddrUp(t, nsA, "ipvl0", "192.0.2.1/24")
	netnstest.AddrUp(t, nsB, "ipvl1", "192.0.2.2/24")

	got, err := netnstest.Handle(t, nsA).LinkByName("ipvl0")
	if err != nil {
		t.Fatalf("find ipvl0: %v", err)
	}
	iv, ok := got.(*netlink.IPVlan)
	if !ok || iv.Mode != netlink.IPVLAN_MODE_L2 {
		t.Fatalf("ipvl0 is %T %+v, want an ipvlan in L2 mode", got, got)
	}
	if err := udpEcho(nsA, nsB, "192.0.2.2:7000", 5*time.Second); err != nil {
		t.Fatalf("ipvlan L2 traffic: %v", err)
	}
}

// A VLAN sub-interface tags traffic: two ends with the same VLAN id talk, and
// ends on different ids over the same wire do not.
func TestProbeVLAN(t *testing.T) {
	kernelguest.Require(t)
	nsA, nsB := netnstest.New(t), netnstest.New(t)
	netnstest.Wire(t, nsA, nsB, "v") // v in A, vp in B, both up
	addVLAN := func(ns, parentName, name string, id int) {
		t.Helper()
		h := netnstest.Handle(t, ns)
		parent, err := h.LinkByName(parentName)
		if err != nil {
			t.Fatalf("find %s: %v", parentName, err)
		}
		v := &netlink.Vlan{
			LinkAttrs:    netlink.LinkAttrs{Name: name, ParentIndex: parent.Attrs().Index},
			VlanId:       id,
			VlanProtocol: netlink.VLAN_PROTOCOL_8021Q,
		}
		if err := h.LinkAdd(v); err != nil {
			t.Fatalf("add VLAN %s id %d: %v", name, id, err)
		}
	}
	addVLAN(nsA, "v", "va.100", 100)
	addVLAN(nsB, "vp", "vb.100", 100)
	addVLAN(nsA, "v", "va.200", 200)
	addVLAN(nsB, "vp", "vb.300", 300)
	netnstest.AddrUp(t, nsA, "va.100", "192.0.2.1/24")
	netnstest.AddrUp(t, nsB, "vb.100", "192.0.2.2/24")
	netnstest.AddrUp(t, nsA, "va.200", "198.51.100.1/24")
	netnstest.AddrUp(t, nsB, "vb.300", "198.51.100.2/24")

	got, err := netnstest.Handle(t, nsA).LinkByName("va.100")
	if err != nil {
		t.Fatalf("find va.100: %v", err)
	}
	if v, ok := got.(*netlink.Vlan); !ok || v.VlanId != 100 || v.VlanProtocol != netlink.VLAN_PROTOCOL_8021Q {
		t.Fatalf("va.100 is %T %+v, want an 802.1Q VLAN with id 100", got, got)
	}
	if err := udpEcho(nsA, nsB, "192.0.2.2:7000", 5*time.Second); err != nil {
		t.Fatalf("traffic on VLAN 100: %v", err)
	}
	if err := udpEcho(nsA, nsB, "198.51.100.2:7000", 500*time.Millisecond); err == nil {
		t.Fatal("traffic passed between VLAN 200 and VLAN 300: the sub-interfaces do not tag")
	}
}
