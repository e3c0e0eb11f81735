package kernelguest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeSysfs builds /sys/class/net and /sys/devices look-alikes: lo (no device),
// eth0 on a PCI function without SR-IOV, and eth1 on a PF with 7 VFs, VF 0 of
// which has the netdev eth2.
func fakeSysfs(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	mk := func(p, content string) {
		t.Helper()
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, name string) {
		t.Helper()
		name = filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(root, target), name); err != nil {
			t.Fatal(err)
		}
	}
	mk("class/net/lo/mtu", "65536\n")
	mk("devices/0000:00:02.0/vendor", "0x8086\n")
	link("devices/0000:00:02.0", "class/net/eth0/device")
	mk("devices/0000:01:00.0/sriov_totalvfs", "7\n")
	mk("devices/0000:01:00.0/sriov_numvfs", "0\n")
	mk("devices/0000:01:10.0/net/eth2/mtu", "1500\n")
	link("devices/0000:01:10.0", "devices/0000:01:00.0/virtfn0")
	link("devices/0000:01:00.0", "class/net/eth1/device")
	orig := sysClassNet
	sysClassNet = filepath.Join(root, "class/net")
	t.Cleanup(func() { sysClassNet = orig })
	return root
}

func TestFindPF(t *testing.T) {
	fakeSysfs(t)
	pf, err := FindPF()
	if err != nil {
		t.Fatal(err)
	}
	want := PF{Name: "eth1", PCIAddr: "0000:01:00.0", TotalVFs: 7}
	if pf != want {
		t.Fatalf("FindPF = %+v, want %+v", pf, want)
	}

	sysClassNet = t.TempDir()
	if _, err := FindPF(); err == nil || !strings.Contains(err.Error(), "no SR-IOV capable netdev") {
		t.Fatalf("FindPF on a host without a PF: err = %v", err)
	}
}

func TestVFNetdevAndPCIAddr(t *testing.T) {
	fakeSysfs(t)
	pf := PF{Name: "eth1", PCIAddr: "0000:01:00.0", TotalVFs: 7}
	name, err := VFNetdev(pf, 0, time.Second)
	if err != nil || name != "eth2" {
		t.Fatalf("VFNetdev(0) = %q, %v; want eth2", name, err)
	}
	addr, err := VFPCIAddr(pf, 0)
	if err != nil || addr != "0000:01:10.0" {
		t.Fatalf("VFPCIAddr(0) = %q, %v; want 0000:01:10.0", addr, err)
	}
	if _, err := VFNetdev(pf, 1, 100*time.Millisecond); err == nil {
		t.Fatal("VFNetdev(1) found a netdev for a VF that does not exist")
	}
}

func TestSetNumVFsRestoresZero(t *testing.T) {
	root := fakeSysfs(t)
	pf := PF{Name: "eth1", PCIAddr: "0000:01:00.0", TotalVFs: 7}
	numvfs := filepath.Join(root, "devices/0000:01:00.0/sriov_numvfs")
	read := func() string {
		b, err := os.ReadFile(numvfs)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	t.Run("enable", func(t *testing.T) {
		SetNumVFs(t, pf, 2)
		if got := read(); got != "2" {
			t.Fatalf("sriov_numvfs = %q during the test, want 2", got)
		}
	})
	if got := read(); got != "0" {
		t.Fatalf("sriov_numvfs = %q after the test, want 0", got)
	}
}
