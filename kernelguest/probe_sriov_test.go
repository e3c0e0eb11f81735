package kernelguest_test

import (
	"bytes"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/kernelguest"
)

// The emulated igb PF makes 2 VFs; the PF sets each VF's MAC and port VLAN, the
// VFs move into their own netns, and traffic passes between them through the
// NIC's internal switch (QEMU's igb loops VF-to-VF frames back; it has no
// backend, so nothing leaves the guest).
func TestProbeSRIOVVFs(t *testing.T) {
	pf := kernelguest.RequireSRIOV(t)
	t.Logf("PF %s at %s, %d VFs possible", pf.Name, pf.PCIAddr, pf.TotalVFs)
	if pf.TotalVFs < 2 {
		t.Fatalf("PF %s offers %d VFs, want at least 2", pf.Name, pf.TotalVFs)
	}
	pfLink, err := netlink.LinkByName(pf.Name)
	if err != nil {
		t.Fatalf("find PF: %v", err)
	}
	if err := netlink.LinkSetUp(pfLink); err != nil {
		t.Fatalf("set PF up: %v", err)
	}
	t.Cleanup(func() { _ = netlink.LinkSetDown(pfLink) })
	// VFs wait for the PF's link ("PF still in reset state") before they work.
	start := time.Now()
	if err := waitOperUp(pf.Name, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("PF link up in %s", time.Since(start).Round(time.Millisecond))
	// Configure the VFs through the PF before igbvf sees them, as a CNI does
	// before handing a VF to a pod: igbvf takes its MAC when it probes.
	kernelguest.SetAutoprobe(t, pf, false)
	kernelguest.SetNumVFs(t, pf, 2)

	macs := []net.HardwareAddr{{0x02, 0, 0, 0, 0x0f, 0}, {0x02, 0, 0, 0, 0x0f, 1}}
	const vlan = 100
	vfs := make([]string, 2)
	for i := range vfs {
		if err := netlink.LinkSetVfHardwareAddr(pfLink, i, macs[i]); err != nil {
			t.Fatalf("set VF %d MAC through the PF: %v", i, err)
		}
		if err := netlink.LinkSetVfVlan(pfLink, i, vlan); err != nil {
			t.Fatalf("set VF %d VLAN through the PF: %v", i, err)
		}
		if err := kernelguest.BindVF(pf, i, "igbvf"); err != nil {
			t.Fatal(err)
		}
		name, err := kernelguest.VFNetdev(pf, i, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		vfs[i] = name
	}
	t.Logf("VF netdevs %v", vfs)

	// The PF reports what it applied.
	pfLink, err = netlink.LinkByName(pf.Name)
	if err != nil {
		t.Fatalf("find PF: %v", err)
	}
	if got := len(pfLink.Attrs().Vfs); got != 2 {
		t.Fatalf("PF lists %d VFs, want 2", got)
	}
	for i, vf := range pfLink.Attrs().Vfs {
		if !bytes.Equal(vf.Mac, macs[i]) || vf.Vlan != vlan {
			t.Fatalf("PF reports VF %d with MAC %s VLAN %d, want %s VLAN %d", i, vf.Mac, vf.Vlan, macs[i], vlan)
		}
	}

	nss := []string{netnstest.New(t), netnstest.New(t)}
	addrs := []string{"192.0.2.1/24", "192.0.2.2/24"}
	for i, name := range vfs {
		link, err := netlink.LinkByName(name)
		if err != nil {
			t.Fatalf("find VF netdev %s: %v", name, err)
		}
		if err := netlink.LinkSetNsFd(link, netnstest.Fd(t, nss[i])); err != nil {
			t.Fatalf("move VF %s into a netns: %v", name, err)
		}
		netnstest.AddrUp(t, nss[i], name, addrs[i])
	}
	for i, name := range vfs {
		link, err := netnstest.Handle(t, nss[i]).LinkByName(name)
		if err != nil {
			t.Fatalf("find %s in its netns: %v", name, err)
		}
		if !bytes.Equal(link.Attrs().HardwareAddr, macs[i]) {
			t.Errorf("VF %d netdev %s has MAC %s, want %s set through the PF", i, name, link.Attrs().HardwareAddr, macs[i])
		}
	}
	start = time.Now()
	if err := udpEcho(nss[0], nss[1], "192.0.2.2:7000", 10*time.Second); err != nil {
		t.Fatalf("traffic VF 0 -> VF 1 on port VLAN %d: %v", vlan, err)
	}
	t.Logf("VF 0 -> VF 1 echo in %s", time.Since(start).Round(time.Millisecond))

	// The port VLAN is enforced by the (emulated) NIC: with VF 1 moved to another
	// VLAN through the PF, VF 0 cannot reach it; moved back, it can again.
	if err := netlink.LinkSetVfVlan(pfLink, 1, vlan+1); err != nil {
		t.Fatalf("set VF 1 VLAN through the PF: %v", err)
	}
	if err := udpEcho(nss[0], nss[1], "192.0.2.2:7000", time.Second); err == nil {
		t.Fatalf("traffic passed between VF 0 on VLAN %d and VF 1 on VLAN %d", vlan, vlan+1)
	}
	if err := netlink.LinkSetVfVlan(pfLink, 1, vlan); err != nil {
		t.Fatalf("set VF 1 VLAN through the PF: %v", err)
	}
	start = time.Now()
	if err := udpEcho(nss[0], nss[1], "192.0.2.2:7000", 10*time.Second); err != nil {
		t.Fatalf("traffic VF 0 -> VF 1 back on VLAN %d: %v", vlan, err)
	}
	t.Logf("VF 0 -> VF 1 echo back on VLAN %d in %s", vlan, time.Since(start).Round(time.Millisecond))
}

// waitOperUp waits until the link name in this netns reports operstate up.
func waitOperUp(name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		link, err := netlink.LinkByName(name)
		if err != nil {
			return fmt.Errorf("find %s: %w", name, err)
		}
		if link.Attrs().OperState == netlink.OperUp {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s is %s, not up, after %s", name, link.Attrs().OperState, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
