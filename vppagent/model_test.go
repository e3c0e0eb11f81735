package vppagent

import (
	"strings"
	"testing"
)

func TestTagFitsVPPAndStaysUnique(t *testing.T) {
	a := PodInterface{ContainerID: cidA, IfName: "averylongifname"}
	b := PodInterface{ContainerID: cidB, IfName: "averylongifname"}
	if len(a.Tag()) > maxTag || !strings.HasPrefix(a.Tag(), "telcni:"+cidA[:32]) || !strings.HasSuffix(a.Tag(), ":averylongifname") {
		t.Errorf("tag %q (%d bytes)", a.Tag(), len(a.Tag()))
	}
	if a.Tag() == b.Tag() {
		t.Error("different containers share a tag")
	}
	// Ids that differ only past the kept head still get distinct tags.
	c := PodInterface{ContainerID: cidA[:60] + "ffff", IfName: "averylongifname"}
	if c.Tag() == a.Tag() || len(c.Tag()) > maxTag {
		t.Errorf("tags %q and %q", a.Tag(), c.Tag())
	}
	short := PodInterface{ContainerID: "abc", IfName: "eth1"}
	if short.Tag() != "telcni:abc:eth1" {
		t.Errorf("tag %q", short.Tag())
	}
}

func TestValidate(t *testing.T) {
	bad := []Network{
		{Name: "a", Kind: "ipvlan"},
		{Name: "a", Kind: KindMemif, Memif: MemifOptions{Mode: MemifModeIP}},
		{Name: "a", Kind: KindMemif, Memif: MemifOptions{RingSize: 1000}},
		{Name: "a", Kind: KindMemif, Memif: MemifOptions{Socket: "tcp"}},
		{Name: "a", Kind: KindVhostUser, Vhost: VhostOptions{Mode: "both"}},
		{Name: "a", Kind: KindMemif, VLAN: 10},
		{Name: "a", Kind: KindMemif, VLAN: 5000, Uplink: &Uplink{Kind: UplinkAFPacket, Name: "x"}},
		{Name: "a", Kind: KindMemif, Uplink: &Uplink{Kind: UplinkAVF, PCI: "zz"}},
		{Name: "a", Kind: KindMemif, Uplink: &Uplink{Kind: "tap", Name: "x"}},
		{Name: "a", Kind: KindMemif, L3: true, Uplink: &Uplink{Kind: UplinkAFPacket, Name: "x"}},
	}
	for _, n := range bad {
		if err := n.Validate(); err == nil {
			t.Errorf("%+v validated", n)
		}
	}
	good := []Network{
		{Name: "a", Kind: KindMemif},
		{Name: "a", Kind: KindMemif, L3: true, Memif: MemifOptions{Mode: MemifModeIP, Queues: 4, RingSize: 4096, Socket: SocketFile}},
		{Name: "a", Kind: KindVhostUser, Vhost: VhostOptions{Mode: "client"}, VLAN: 100, Uplink: &Uplink{Kind: UplinkAVF, PCI: "0000:3b:02.1"}},
		{Name: "a", Kind: KindMemif, Uplink: &Uplink{Kind: UplinkDPDK, Name: "vf0"}},
	}
	for _, n := range good {
		if err := n.Validate(); err != nil {
			t.Errorf("%+v: %v", n, err)
		}
	}
}

func TestPCIToU32(t *testing.T) {
	got, err := pciToU32("0000:3b:02.1")
	// vlib_pci_addr_t: domain:16 bus:8 slot:5 function:3.
	if want := uint32(0x3b<<16 | 2<<24 | 1<<29); err != nil || got != want {
		t.Errorf("pciToU32 = %#x, %v; want %#x", got, err, want)
	}
	if _, err := pciToU32("0000:3b:20.0"); err == nil {
		t.Error("slot 0x20 accepted")
	}
}

func TestVhostSocketLength(t *testing.T) {
	p := PodInterface{ContainerID: cidA, IfName: "vh0"}
	if _, err := p.vhostSocket("/run/telcni"); err != nil {
		t.Error(err)
	}
	if _, err := p.vhostSocket("/" + strings.Repeat("d", 100)); err == nil {
		t.Error("a socket path over 107 bytes was accepted")
	}
}

func TestBridgeDomainStableAndInRange(t *testing.T) {
	n, same := Network{Name: "fronthaul"}, Network{Name: "fronthaul", Kind: KindVhostUser}
	if n.BridgeDomain() != same.BridgeDomain() || n.BridgeDomain() == 0 || n.BridgeDomain() >= 1<<24 {
		t.Errorf("bd %d", n.BridgeDomain())
	}
	if (&Network{Name: "midhaul"}).BridgeDomain() == n.BridgeDomain() {
		t.Error("two networks share a bridge domain")
	}
}
