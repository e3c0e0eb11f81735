package sriov

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/kernelguest"
)

// guestPF readies the guest's igb PF with n VFs the way a node has them:
// PF up, every VF on its kernel driver (igbvf) with a netdev in the host.
func guestPF(t *testing.T, n int) (kernelguest.PF, []string) {
	t.Helper()
	return guestPFHeld(t, kernelguest.RequireSRIOV(t), n)
}

// guestPFHeld is guestPF for a PF the test already holds.
func guestPFHeld(t *testing.T, pf kernelguest.PF, n int) (kernelguest.PF, []string) {
	t.Helper()
	if pf.TotalVFs < n {
		t.Fatalf("PF %s offers %d VFs, want %d", pf.Name, pf.TotalVFs, n)
	}
	link, err := netlink.LinkByName(pf.Name)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		t.Fatalf("set PF up: %v", err)
	}
	t.Cleanup(func() { _ = netlink.LinkSetDown(link) })
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := netlink.LinkByName(pf.Name)
		if err == nil && l.Attrs().OperState == netlink.OperUp {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("PF %s not up after 10s", pf.Name)
		}
		time.Sleep(50 * time.Millisecond)
	}
	kernelguest.SetAutoprobe(t, pf, false)
	kernelguest.SetNumVFs(t, pf, n)
	names := make([]string, n)
	for i := range n {
		if err := kernelguest.BindVF(pf, i, "igbvf"); err != nil {
			t.Fatal(err)
		}
		if names[i], err = kernelguest.VFNetdev(pf, i, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	// Creating VFs resets the igb PF, whose link then takes 2-3 s to come
	// back (up to 10 s and more under TCG on a loaded machine); a node's
	// VFs exist long before pods come. Wait until a VF gets its carrier, so
	// that the tests measure the steady state.
	vf0, err := netlink.LinkByName(names[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(vf0); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		l, err := netlink.LinkByName(names[0])
		if err == nil && l.Attrs().OperState == netlink.OperUp {
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("VF %s has no carrier after 30s", names[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("VFs ready, carrier %s after they were made", time.Since(start).Round(time.Millisecond))
	_ = netlink.LinkSetDown(vf0)
	return pf, names
}

func newPath(t *testing.T) *Path {
	return New(slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})))
}

func request(n *api.Network, nsPath, id, addr, mac string) *attach.Request {
	return &attach.Request{
		ContainerID: id, Netns: nsPath, IfName: "net1", Network: n, MAC: mac,
		IPs: []attach.IPConfig{{Address: netip.MustParsePrefix(addr)}},
	}
}

func pfVF(t *testing.T, pf string, vf int) netlink.VfInfo {
	t.Helper()
	_, info, err := vfInfo(&netlink.Handle{}, pf, vf)
	if err != nil {
		t.Fatal(err)
	}
	return *info
}

func stateVFIndex(t *testing.T, iface *attach.Interface) int {
	t.Helper()
	i, err := strconv.Atoi(iface.State[stateVF])
	if err != nil {
		t.Fatalf("state %v: %v", iface.State, err)
	}
	return i
}

// assertReset checks that the PF reports VF vf at its defaults (the MAC is
// cleared, or random if the PF refuses a zero MAC: never the pod's).
func assertReset(t *testing.T, pf string, vf int, podMAC string) {
	t.Helper()
	info := pfVF(t, pf, vf)
	if info.Vlan != 0 || info.Qos != 0 || !info.Spoofchk || info.Trust != 0 || info.MaxTxRate != 0 || info.MinTxRate != 0 ||
		info.LinkState != netlink.VF_LINK_STATE_AUTO || info.Mac.String() == podMAC {
		t.Fatalf("VF %d not reset: %+v", vf, info)
	}
}

func ctx(t *testing.T) context.Context { return t.Context() }

// A pod gets a kernel VF with the network's VLAN and its requested MAC set
// through the PF; two pods' VFs talk through the NIC; the VFs run out with a
// clear error; DEL returns the VF reset to the host and another pod takes it.
func TestKernelVFLifecycle(t *testing.T) {
	pf, hostNames := guestPF(t, 2)
	p := newPath(t)
	// The firewall (kernelpath's nftables rules in the pod) applies to a
	// kernel VF too: installed at ADD, verified by CHECK, removed at DEL.
	n := &api.Network{Name: "fh", Path: api.PathSRIOV, Master: pf.Name, VLAN: 100,
		Firewall: []api.FirewallRule{{Direction: "ingress", Action: "drop", Protocol: "tcp", Ports: []int{23}}}}
	if err := n.Validate(); err != nil {
		t.Fatal(err)
	}
	nsA, nsB, nsC := netnstest.New(t), netnstest.New(t), netnstest.New(t)
	macA, macB := "02:00:00:00:0a:01", "02:00:00:00:0a:02"

	start := time.Now()
	a, err := p.Attach(ctx(t), request(n, nsA, "ctr-a", "192.0.2.1/24", macA))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ADD kernel VF in %s: %+v", time.Since(start).Round(time.Millisecond), a.State)
	start = time.Now()
	b, err := p.Attach(ctx(t), request(n, nsB, "ctr-b", "192.0.2.2/24", macB))
	if err != nil {
		t.Fatal(err)
	}
	vfA, vfB := stateVFIndex(t, a), stateVFIndex(t, b)
	if vfA == vfB {
		t.Fatalf("both pods got VF %d", vfA)
	}
	for _, c := range []struct {
		vf  int
		mac string
		ns  string
		if_ *attach.Interface
	}{{vfA, macA, nsA, a}, {vfB, macB, nsB, b}} {
		info := pfVF(t, pf.Name, c.vf)
		if info.Vlan != 100 || info.Mac.String() != c.mac {
			t.Fatalf("PF reports VF %d with VLAN %d MAC %s, want 100 %s", c.vf, info.Vlan, info.Mac, c.mac)
		}
		if c.if_.MAC != c.mac {
			t.Fatalf("pod interface MAC %s, want %s", c.if_.MAC, c.mac)
		}
		l, err := netnstest.Handle(t, c.ns).LinkByName("net1")
		if err != nil {
			t.Fatalf("net1 in pod: %v", err)
		}
		if l.Attrs().HardwareAddr.String() != c.mac {
			t.Fatalf("pod's net1 has MAC %s, want %s", l.Attrs().HardwareAddr, c.mac)
		}
		if di := c.if_.DeviceInfo; di == nil || di.PCI == nil || di.PCI.PCIAddress != c.if_.State[statePCI] || di.PCI.PFPCIAddress != pf.PCIAddr {
			t.Fatalf("device-info %+v", di)
		}
	}
	recA := &attach.Record{Request: *request(n, nsA, "ctr-a", "192.0.2.1/24", macA), Interface: *a}
	recB := &attach.Record{Request: *request(n, nsB, "ctr-b", "192.0.2.2/24", macB), Interface: *b}
	for _, r := range []*attach.Record{recA, recB} {
		if err := p.Check(ctx(t), r); err != nil {
			t.Fatalf("CHECK: %v", err)
		}
	}
	for _, ns := range []string{nsA, nsB} {
		h := netnstest.Handle(t, ns)
		for {
			l, err := h.LinkByName("net1")
			if err == nil && l.Attrs().OperState == netlink.OperUp {
				break
			}
			if time.Since(start) > 15*time.Second {
				t.Fatalf("net1 in %s not up: %v", ns, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	t.Logf("both pods' VFs operationally up %s after ADD of B started", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	cctx, cancel := context.WithTimeout(ctx(t), 15*time.Second)
	defer cancel()
	if _, err := netnstest.UDPEcho(cctx, nsA, nsB, netip.MustParseAddr("192.0.2.2")); err != nil {
		t.Fatalf("pod A -> pod B over their VFs: %v", err)
	}
	t.Logf("pod A -> pod B echo over VFs on VLAN 100 in %s", time.Since(start).Round(time.Millisecond))

	// Exhaustion.
	_, err = p.Attach(ctx(t), request(n, nsC, "ctr-c", "192.0.2.3/24", ""))
	if err == nil || !strings.Contains(err.Error(), "no free VF on PF "+pf.Name) || attach.CodeOf(err) != attach.CodeNoFreeDevice {
		t.Fatalf("third pod on 2 VFs: err %v (code %d), want no free VF on PF %s", err, attach.CodeOf(err), pf.Name)
	}
	t.Logf("exhausted: %v", err)

	// DEL: the VF is back in the host under its name, reset.
	start = time.Now()
	if err := p.Detach(ctx(t), recA); err != nil {
		t.Fatal(err)
	}
	t.Logf("DEL kernel VF in %s", time.Since(start).Round(time.Millisecond))
	assertReset(t, pf.Name, vfA, macA)
	if l, err := netlink.LinkByName(hostNames[vfA]); err != nil {
		t.Fatalf("VF %d netdev not back in the host as %s: %v", vfA, hostNames[vfA], err)
	} else if l.Attrs().ParentDev != a.State[statePCI] {
		t.Fatalf("host %s is %s, want VF %s", hostNames[vfA], l.Attrs().ParentDev, a.State[statePCI])
	}
	if err := p.Detach(ctx(t), recA); err != nil {
		t.Fatalf("second DEL: %v", err)
	}
	if err := p.Check(ctx(t), recB); err != nil {
		t.Fatalf("pod B after pod A's DEL: %v", err)
	}

	// The freed VF goes to the next pod, configured afresh.
	c, err := p.Attach(ctx(t), request(n, nsC, "ctr-c", "192.0.2.3/24", ""))
	if err != nil {
		t.Fatal(err)
	}
	if got := stateVFIndex(t, c); got != vfA {
		t.Fatalf("pod C got VF %d, want the freed VF %d", got, vfA)
	}
	if info := pfVF(t, pf.Name, vfA); info.Vlan != 100 || info.Mac.String() != c.MAC {
		t.Fatalf("PF reports VF %d with VLAN %d MAC %s, want 100 %s", vfA, info.Vlan, info.Mac, c.MAC)
	}
	if _, err := netnstest.UDPEcho(cctx, nsC, nsB, netip.MustParseAddr("192.0.2.2")); err != nil {
		t.Fatalf("pod C -> pod B: %v", err)
	}
	recC := &attach.Record{Request: *request(n, nsC, "ctr-c", "192.0.2.3/24", ""), Interface: *c}
	for _, r := range []*attach.Record{recB, recC} {
		if err := p.Detach(ctx(t), r); err != nil {
			t.Fatal(err)
		}
	}
	assertReset(t, pf.Name, vfB, macB)
}

// With the pod's netns deleted before DEL, the kernel returns the VF's
// netdev to the host netns; DEL finds it there, renames it back and resets
// the VF, and the next pod can take it.
func TestKernelVFNetnsGoneBeforeDEL(t *testing.T) {
	pf, hostNames := guestPF(t, 1)
	p := newPath(t)
	trust := true
	n := &api.Network{Name: "fh", Path: api.PathSRIOV, Master: pf.Name, VLAN: 200,
		SRIOV: &api.SRIOVOptions{VLANQoS: 3, Trust: &trust}}
	nsA := netnstest.New(t)
	mac := "02:00:00:00:0b:01"
	a, err := p.Attach(ctx(t), request(n, nsA, "ctr-a", "192.0.2.1/24", mac))
	if err != nil {
		t.Fatal(err)
	}
	if info := pfVF(t, pf.Name, 0); info.Vlan != 200 || info.Qos != 3 || info.Trust == 0 {
		t.Fatalf("PF reports VF 0 as %+v, want vlan 200 qos 3 trust on", info)
	}
	if err := netns.DeleteNamed(filepath.Base(nsA)); err != nil {
		t.Fatal(err)
	}
	rec := &attach.Record{Request: *request(n, nsA, "ctr-a", "192.0.2.1/24", mac), Interface: *a}
	start := time.Now()
	if err := p.Detach(ctx(t), rec); err != nil {
		t.Fatal(err)
	}
	t.Logf("DEL with the netns gone in %s", time.Since(start).Round(time.Millisecond))
	assertReset(t, pf.Name, 0, mac)
	if _, err := netlink.LinkByName(hostNames[0]); err != nil {
		t.Fatalf("VF netdev not back as %s: %v", hostNames[0], err)
	}
	if err := p.Detach(ctx(t), rec); err != nil {
		t.Fatalf("second DEL: %v", err)
	}
	nsB := netnstest.New(t)
	// The pod already has a link with the VF's kernel name.
	if err := netnstest.Handle(t, nsB).LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: hostNames[0]}}); err != nil {
		t.Fatal(err)
	}
	b, err := p.Attach(ctx(t), request(n, nsB, "ctr-b", "192.0.2.2/24", ""))
	if err != nil {
		t.Fatalf("next pod after a DEL without netns: %v", err)
	}
	if err := p.Detach(ctx(t), &attach.Record{Request: *request(n, nsB, "ctr-b", "192.0.2.2/24", ""), Interface: *b}); err != nil {
		t.Fatal(err)
	}
}

// sriov-dpdk binds the VF to vfio-pci with its settings applied through the
// PF and reports device-info pci; DEL resets it and rebinds igbvf.
func TestDPDKVF(t *testing.T) {
	pf, _ := guestPF(t, 2)
	p := newPath(t)
	n := &api.Network{Name: "dp", Path: api.PathSRIOVDPDK, Master: pf.Name, VLAN: 300, SRIOV: &api.SRIOVOptions{VFs: "1"}}
	ns := netnstest.New(t)
	mac := "02:00:00:00:0c:01"
	start := time.Now()
	a, err := p.Attach(ctx(t), request(n, ns, "ctr-d", "192.0.2.9/24", mac))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ADD dpdk VF in %s: %+v", time.Since(start).Round(time.Millisecond), a.DeviceInfo.PCI)
	if got := stateVFIndex(t, a); got != 1 {
		t.Fatalf("got VF %d, want 1 (sriov.vfs)", got)
	}
	pci, err := kernelguest.VFPCIAddr(pf, 1)
	if err != nil {
		t.Fatal(err)
	}
	if d := boundDriver(pci); d != "vfio-pci" {
		t.Fatalf("VF bound to %q, want vfio-pci", d)
	}
	di := a.DeviceInfo
	if di == nil || di.Type != api.DeviceInfoPCI || di.Version != api.DeviceInfoVersion || di.PCI == nil ||
		di.PCI.PCIAddress != pci || di.PCI.PFPCIAddress != pf.PCIAddr {
		t.Fatalf("device-info %+v", di)
	}
	if info := pfVF(t, pf.Name, 1); info.Vlan != 300 || !bytes.Equal(info.Mac, mustMAC(mac)) {
		t.Fatalf("PF reports VF 1 as %+v", info)
	}
	// The pod's netns has no VF netdev: IPs are the DPDK app's to use.
	if links, _ := netnstest.Handle(t, ns).LinkList(); len(links) != 1 {
		t.Fatalf("pod netns has %d links, want only lo", len(links))
	}
	rec := &attach.Record{Request: *request(n, ns, "ctr-d", "192.0.2.9/24", mac), Interface: *a}
	if err := p.Check(ctx(t), rec); err != nil {
		t.Fatal(err)
	}
	// Only VF 1 is usable: a second pod finds none.
	if _, err := p.Attach(ctx(t), request(n, netnstest.New(t), "ctr-e", "192.0.2.10/24", "")); err == nil ||
		!strings.Contains(err.Error(), "1 of its 2 VFs usable") {
		t.Fatalf("second pod: %v", err)
	}
	if err := p.Detach(ctx(t), rec); err != nil {
		t.Fatal(err)
	}
	if d := boundDriver(pci); d != "igbvf" {
		t.Fatalf("VF bound to %q after DEL, want igbvf", d)
	}
	if _, err := kernelguest.VFNetdev(pf, 1, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	assertReset(t, pf.Name, 1, mac)
	if err := p.Detach(ctx(t), rec); err != nil {
		t.Fatalf("second DEL: %v", err)
	}
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}
