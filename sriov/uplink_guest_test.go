package sriov

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/kernelguest"
)

// openVFIOGroup opens the VF's vfio group as VPP (or any DPDK
// application) does when it uses the device; close lets it go.
func openVFIOGroup(t *testing.T, pci string) (close func()) {
	t.Helper()
	g, err := filepath.EvalSymlinks(filepath.Join("/sys/bus/pci/devices", pci, "iommu_group"))
	if err != nil {
		t.Fatalf("VF %s has no IOMMU group: %v", pci, err)
	}
	id := filepath.Base(g)
	for _, node := range []string{filepath.Join("/dev/vfio", id), filepath.Join("/dev/vfio", "noiommu-"+id)} {
		f, err := os.OpenFile(node, os.O_RDWR, 0)
		if err == nil {
			return func() { _ = f.Close() }
		}
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("open %s: %v", node, err)
		}
	}
	t.Fatalf("no vfio group node for VF %s (group %s)", pci, id)
	return nil
}

// A VF lent to a VPP uplink on QEMU's igb: taken from the pool pods use
// (unbound from igbvf, configured through the PF for an uplink, bound to
// vfio-pci), never given to a pod meanwhile (also not by deviceID), kept
// across a restart of the path whichever of Retain and RetainUplinks comes
// first, not returned while its vfio group is open (VPP holds it), and
// returned on igbvf under its host name, reset, for the next pod.
func TestUplinkVFLeaseGuest(t *testing.T) {
	pf, names := guestPF(t, 2)
	p := newPath(t)
	const network = "vpp/up"
	l, err := p.TakeForUplink(ctx(t), network, pf.Name, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("lent VF %d (%s) of %s, kernel driver %s, host name %s", l.VF, l.PCI, l.PF, l.Driver, l.HostName)
	if d := boundDriver(l.PCI); d != vfioDriver || l.Driver != "igbvf" || l.HostName != names[l.VF] || l.BindAs != vfioDriver {
		t.Fatalf("lease %+v, VF bound to %q: want vfio-pci, kernel driver igbvf, host name %s", l, d, names[l.VF])
	}
	if n := netdevOf(l.PCI); n != "" {
		t.Fatalf("lent VF still has netdev %s", n)
	}
	info := pfVF(t, pf.Name, l.VF)
	if info.Spoofchk || info.Trust == 0 || isZero(info.Mac) {
		t.Fatalf("lent VF as the PF sees it: %+v, want spoofchk off, trust on, a MAC", info)
	}
	if again, err := p.TakeForUplink(ctx(t), network, pf.Name, "", nil); err != nil || again != l {
		t.Fatalf("second take for the same network: %+v %v, want %+v", again, err, l)
	}
	if _, err := p.TakeForUplink(ctx(t), "vpp/other", "nosuch0", "", nil); attach.CodeOf(err) != attach.CodeInvalidConfig || !strings.Contains(err.Error(), "nosuch0") {
		t.Fatalf("unknown PF: code %d %v", attach.CodeOf(err), err)
	}

	// Pods: one gets the other VF; the next finds none, also by deviceID.
	n := &api.Network{Name: "fh", Path: api.PathSRIOV, Master: pf.Name}
	nsA, nsB := netnstest.New(t), netnstest.New(t)
	reqA := request(n, nsA, "ctr-a", "192.0.2.1/24", "")
	ifA, err := p.Attach(ctx(t), reqA)
	if err != nil {
		t.Fatal(err)
	}
	recA := &attach.Record{Request: *reqA, Interface: *ifA}
	if stateVFIndex(t, ifA) == l.VF {
		t.Fatalf("the pod got the lent VF %d", l.VF)
	}
	full := func(p *Path) {
		t.Helper()
		_, err := p.Attach(ctx(t), request(n, nsB, "ctr-b", "192.0.2.2/24", ""))
		if attach.CodeOf(err) != attach.CodeNoFreeDevice {
			t.Fatalf("pod ADD with one VF lent and one held: code %d %v", attach.CodeOf(err), err)
		}
		req := request(n, nsB, "ctr-b", "192.0.2.2/24", "")
		req.DeviceID = l.PCI
		_, err = p.Attach(ctx(t), req)
		if attach.CodeOf(err) != attach.CodeNoFreeDevice || !strings.Contains(err.Error(), "held by uplink of network "+network) {
			t.Fatalf("pod ADD with the lent VF as deviceID: code %d %v", attach.CodeOf(err), err)
		}
		_, err = p.TakeForUplink(ctx(t), "vpp/other", pf.Name, "", nil)
		if attach.CodeOf(err) != attach.CodeNoFreeDevice {
			t.Fatalf("second uplink with no free VF: code %d %v", attach.CodeOf(err), err)
		}
	}
	full(p)
	t.Logf("pool full: pod and uplink refused")

	// Restart: a fresh path learns both holders from the records, in
	// either order.
	for i, order := range []string{"pods first", "uplinks first"} {
		p = newPath(t)
		if i == 0 {
			_ = p.Retain(ctx(t), []*attach.Record{recA})
			p.RetainUplinks([]attach.UplinkVF{l})
		} else {
			p.RetainUplinks([]attach.UplinkVF{l})
			_ = p.Retain(ctx(t), []*attach.Record{recA})
		}
		full(p)
		t.Logf("after a restart (%s): the lease holds", order)
	}

	// VPP has the VF open: not returned, still on vfio-pci and lent.
	release := openVFIOGroup(t, l.PCI)
	err = p.ReturnUplink(ctx(t), network)
	if err == nil || !strings.Contains(err.Error(), "still open") {
		release()
		t.Fatalf("return while the vfio group is open: %v", err)
	}
	t.Logf("return refused while open: %v", err)
	if d := boundDriver(l.PCI); d != vfioDriver {
		release()
		t.Fatalf("VF on %q after a refused return", d)
	}
	full(p)
	release()

	if err := p.ReturnUplink(ctx(t), network); err != nil {
		t.Fatal(err)
	}
	if d := boundDriver(l.PCI); d != "igbvf" {
		t.Fatalf("returned VF bound to %q, want igbvf", d)
	}
	if got := netdevOf(l.PCI); got != names[l.VF] {
		t.Fatalf("returned VF's netdev is %q, want its host name %s", got, names[l.VF])
	}
	assertReset(t, pf.Name, l.VF, "")
	if err := p.ReturnUplink(ctx(t), network); err != nil {
		t.Fatalf("second return: %v", err)
	}
	// Free again: a pod gets it.
	reqB := request(n, nsB, "ctr-b", "192.0.2.2/24", "")
	ifB, err := p.Attach(ctx(t), reqB)
	if err != nil {
		t.Fatalf("pod ADD after the uplink returned its VF: %v", err)
	}
	if stateVFIndex(t, ifB) != l.VF {
		t.Fatalf("pod got VF %d, want the returned VF %d", stateVFIndex(t, ifB), l.VF)
	}
	for _, r := range []*attach.Record{recA, {Request: *reqB, Interface: *ifB}} {
		if err := p.Detach(ctx(t), r); err != nil {
			t.Fatal(err)
		}
	}
}

// A VF VPP's DPDK plugin took at its start (startup.conf lists it: bound
// to vfio-pci, its group open; the test holds the group open in VPP's
// place): no pod gets it, not even by deviceID, and an avf uplink does
// not either; a dpdk-vf uplink adopts it as it is (no unbind, which would
// block on VPP) and releases it untouched; once the group is closed (VPP
// gone) a pod gets it, rebound to igbvf.
func TestUplinkVFAdoptedAndOpenVFsGuest(t *testing.T) {
	pf, _ := guestPF(t, 2)
	p := newPath(t)
	vf1, err := kernelguest.VFPCIAddr(pf, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := bind(vf1, vfioDriver); err != nil {
		t.Fatal(err)
	}
	release := openVFIOGroup(t, vf1)
	released := false
	defer func() {
		if !released {
			release()
		}
	}()
	n := &api.Network{Name: "fh", Path: api.PathSRIOV, Master: pf.Name}
	nsA, nsB := netnstest.New(t), netnstest.New(t)
	reqA := request(n, nsA, "ctr-a", "192.0.2.1/24", "")
	ifA, err := p.Attach(ctx(t), reqA)
	if err != nil {
		t.Fatal(err)
	}
	if stateVFIndex(t, ifA) != 0 {
		t.Fatalf("pod got VF %d, want 0 (VF 1 is open through vfio)", stateVFIndex(t, ifA))
	}
	_, err = p.Attach(ctx(t), request(n, nsB, "ctr-b", "192.0.2.2/24", ""))
	if attach.CodeOf(err) != attach.CodeNoFreeDevice || !strings.Contains(err.Error(), "1 open through vfio") {
		t.Fatalf("pod ADD with VF 1 open through vfio: code %d %v", attach.CodeOf(err), err)
	}
	t.Logf("pod ADD: %v", err)
	req := request(n, nsB, "ctr-b", "192.0.2.2/24", "")
	req.DeviceID = vf1
	if _, err = p.Attach(ctx(t), req); attach.CodeOf(err) != attach.CodeNoFreeDevice || !strings.Contains(err.Error(), "open through vfio") {
		t.Fatalf("pod ADD with deviceID %s open through vfio: code %d %v", vf1, attach.CodeOf(err), err)
	}
	if _, err := p.TakeForUplink(ctx(t), "vpp/avf", pf.Name, "", nil); attach.CodeOf(err) != attach.CodeNoFreeDevice {
		t.Fatalf("avf uplink with VF 1 open through vfio: code %d %v", attach.CodeOf(err), err)
	}
	l, err := p.TakeForUplink(ctx(t), "vpp/dp", pf.Name, "", func(pci string) bool { return pci == vf1 })
	if err != nil {
		t.Fatal(err)
	}
	if !l.Adopted || l.PCI != vf1 || l.Driver != "igbvf" || boundDriver(vf1) != vfioDriver {
		t.Fatalf("adopted lease %+v, VF on %q: want VF %s adopted on vfio-pci", l, boundDriver(vf1), vf1)
	}
	if err := p.ReturnUplink(ctx(t), "vpp/dp"); err != nil {
		t.Fatal(err)
	}
	if boundDriver(vf1) != vfioDriver {
		t.Fatalf("released adopted VF is on %q, want untouched on vfio-pci", boundDriver(vf1))
	}
	release()
	released = true
	reqB := request(n, nsB, "ctr-b", "192.0.2.2/24", "")
	ifB, err := p.Attach(ctx(t), reqB)
	if err != nil {
		t.Fatalf("pod ADD once VPP let VF 1 go: %v", err)
	}
	if stateVFIndex(t, ifB) != 1 || boundDriver(vf1) != "igbvf" {
		t.Fatalf("pod got VF %d on %q, want VF 1 on igbvf", stateVFIndex(t, ifB), boundDriver(vf1))
	}
	for _, r := range []*attach.Record{{Request: *reqA, Interface: *ifA}, {Request: *reqB, Interface: *ifB}} {
		if err := p.Detach(ctx(t), r); err != nil {
			t.Fatal(err)
		}
	}
}
