package sriov

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
)

// fakeSysfs builds a sysfs tree with PF "p0" at 0000:3b:00.0 and three VFs:
// VF 0 on iavf with netdev p0v0, VF 1 on vfio-pci, VF 2 unbound.
func fakeSysfs(t *testing.T) {
	t.Helper()
	root := t.TempDir()
	old := sysfs
	sysfs = root
	t.Cleanup(func() { sysfs = old })
	mk := func(p string) {
		if err := os.MkdirAll(filepath.Join(root, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ln := func(target, link string) {
		if err := os.Symlink(filepath.Join(root, target), filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	dev := "bus/pci/devices/"
	mk(dev + "0000:3b:00.0/net/p0")
	mk("class/net")
	mk("class/net/p0")
	ln(dev+"0000:3b:00.0", "class/net/p0/device")
	mk("bus/pci/drivers/iavf")
	mk("bus/pci/drivers/vfio-pci")
	for i, vf := range []struct{ addr, drv, netdev string }{
		{"0000:3b:02.0", "iavf", "p0v0"}, {"0000:3b:02.1", "vfio-pci", ""}, {"0000:3b:02.2", "", ""},
	} {
		mk(dev + vf.addr)
		ln(dev+vf.addr, dev+"0000:3b:00.0/virtfn"+string(rune('0'+i)))
		if vf.drv != "" {
			ln("bus/pci/drivers/"+vf.drv, dev+vf.addr+"/driver")
		}
		if vf.netdev != "" {
			mk(dev + vf.addr + "/net/" + vf.netdev)
		}
	}
}

func TestDiscover(t *testing.T) {
	fakeSysfs(t)
	pf, err := discover("p0")
	if err != nil {
		t.Fatal(err)
	}
	if pf.PCI != "0000:3b:00.0" || len(pf.VFs) != 3 {
		t.Fatalf("PF %+v", pf)
	}
	want := []VF{{0, "0000:3b:02.0", "iavf", "p0v0"}, {1, "0000:3b:02.1", "vfio-pci", ""}, {2, "0000:3b:02.2", "", ""}}
	for i, vf := range pf.VFs {
		if vf != want[i] {
			t.Errorf("VF %d = %+v, want %+v", i, vf, want[i])
		}
	}
	if _, err := discover("nope"); err == nil || !strings.Contains(err.Error(), "PF nope") {
		t.Fatalf("missing PF: %v", err)
	}
}

// reserve skips VFs outside sriov.vfs and taken ones, learns the kernel
// driver from a sibling, and after Retain (an agent restart) treats the
// records' VFs as taken.
func TestReserveAndRetain(t *testing.T) {
	fakeSysfs(t)
	p := New(slog.New(slog.DiscardHandler))
	n := &api.Network{Name: "fh", Path: api.PathSRIOV, Master: "p0", SRIOV: &api.SRIOVOptions{VFs: "1-2"}}
	req := func(id string) *attach.Request { return &attach.Request{ContainerID: id, IfName: "net1", Network: n} }
	_, vf, drv, err := p.reserve(req("a"))
	if err != nil || vf.Index != 1 || drv != "iavf" {
		t.Fatalf("first reserve: VF %+v driver %q err %v", vf, drv, err)
	}
	_, vf, _, err = p.reserve(req("b"))
	if err != nil || vf.Index != 2 {
		t.Fatalf("second reserve: VF %+v err %v", vf, err)
	}
	_, _, _, err = p.reserve(req("c"))
	if err == nil || attach.CodeOf(err) != attach.CodeNoFreeDevice || !strings.Contains(err.Error(), "no free VF on PF p0 (2 of its 3 VFs usable") {
		t.Fatalf("exhausted: %v (code %d)", err, attach.CodeOf(err))
	}

	// Restart: a fresh path knows nothing until Retain.
	p = New(slog.New(slog.DiscardHandler))
	recs := []*attach.Record{{Request: *req("a"), Interface: attach.Interface{State: map[string]string{
		statePF: "p0", stateVF: "2", statePCI: "0000:3b:02.2"}}}}
	if err := p.Retain(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	_, vf, _, err = p.reserve(req("d"))
	if err != nil || vf.Index != 1 {
		t.Fatalf("after Retain: VF %+v err %v, want VF 1 (VF 2 is held)", vf, err)
	}
	// Detach of a record whose VF another attachment holds leaves it alone.
	other := &attach.Record{Request: *req("z"), Interface: attach.Interface{State: map[string]string{
		statePF: "p0", stateVF: "1", statePCI: "0000:3b:02.1"}}}
	if err := p.Detach(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	if p.taken[vfKey("p0", 1)] != owner("d", "net1") {
		t.Fatalf("VF 1 holder %q after a foreign Detach", p.taken[vfKey("p0", 1)])
	}
}

func TestNeutralName(t *testing.T) {
	for in, want := range map[string]string{"0000:01:10.2": "vf01102", "0001:3b:02.7": "vf00013b027"} {
		if got := neutralName(in); got != want {
			t.Errorf("neutralName(%s) = %s, want %s", in, got, want)
		}
	}
}

// A device plugin's VF (deviceID) is used exactly: refused when it is not
// a VF of the network's PF, outside sriov.vfs, or held by another pod.
func TestReserveDeviceID(t *testing.T) {
	fakeSysfs(t)
	p := New(slog.New(slog.DiscardHandler))
	n := &api.Network{Name: "fh", Path: api.PathSRIOV, Master: "p0", SRIOV: &api.SRIOVOptions{VFs: "0-1"}}
	req := func(id, dev string) *attach.Request {
		return &attach.Request{ContainerID: id, IfName: "net1", Network: n, DeviceID: dev}
	}
	_, vf, _, err := p.reserve(req("a", "0000:3b:02.1"))
	if err != nil || vf.Index != 1 {
		t.Fatalf("deviceID VF 1: %+v %v, want VF 1 (not the first free one)", vf, err)
	}
	for _, c := range []struct{ dev, want string }{
		{"0000:3b:02.1", "deviceID 0000:3b:02.1 (VF 1 of PF p0) is held by a/net1"},
		{"0000:3b:02.2", `is VF 2 of PF p0, outside the network's sriov.vfs "0-1"`},
		{"0000:99:00.0", "deviceID 0000:99:00.0 is not a VF of PF p0 (0000:3b:00.0)"},
	} {
		if _, _, _, err := p.reserve(req("b", c.dev)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("deviceID %s: %v, want %q", c.dev, err, c.want)
		}
	}
	if _, vf, _, err := p.reserve(req("b", "")); err != nil || vf.Index != 0 {
		t.Errorf("without deviceID after the refusals: %+v %v, want the free VF 0", vf, err)
	}
}
