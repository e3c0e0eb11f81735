package kernelguest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// PF is an SR-IOV physical function netdev in the guest (the emulated igb).
type PF struct {
	Name     string // netdev name, e.g. enp1s0
	PCIAddr  string // e.g. 0000:01:00.0
	TotalVFs int    // sriov_totalvfs
}

// sysClassNet is where netdevs are listed; a variable so the host tests can point
// it at a fake tree.
var sysClassNet = "/sys/class/net"

const sysBusPCI = "/sys/bus/pci"

// sriovMu serialises the tests of one binary that use the PF: there is one igb.
var sriovMu sync.Mutex

// RequireSRIOV skips the test unless it runs in the guest with the emulated igb
// SR-IOV NIC, and returns its PF. It holds the PF for the test: other tests of
// the same binary that call it wait until this one ends. The test should leave
// sriov_numvfs at 0 when done (SetNumVFs registers that cleanup).
func RequireSRIOV(t testing.TB) PF {
	t.Helper()
	Require(t)
	if os.Getenv(EnvSRIOV) != "1" {
		t.Skip("the kernel guest was booted without the igb SR-IOV NIC (KG_SRIOV=0)")
	}
	pf, err := FindPF()
	if err != nil {
		t.Fatalf("the harness attached an igb SR-IOV NIC but: %v", err)
	}
	sriovMu.Lock()
	t.Cleanup(sriovMu.Unlock)
	return pf
}

// FindPF returns the first netdev whose PCI device can have VFs.
func FindPF() (PF, error) {
	ents, err := os.ReadDir(sysClassNet)
	if err != nil {
		return PF{}, fmt.Errorf("list netdevs: %w", err)
	}
	for _, e := range ents {
		dev := filepath.Join(sysClassNet, e.Name(), "device")
		b, err := os.ReadFile(filepath.Join(dev, "sriov_totalvfs"))
		if err != nil {
			continue // not a PCI device, or not SR-IOV capable
		}
		total, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || total == 0 {
			continue
		}
		pci, err := filepath.EvalSymlinks(dev)
		if err != nil {
			return PF{}, fmt.Errorf("resolve %s: %w", dev, err)
		}
		return PF{Name: e.Name(), PCIAddr: filepath.Base(pci), TotalVFs: total}, nil
	}
	return PF{}, fmt.Errorf("no SR-IOV capable netdev under %s", sysClassNet)
}

// SetNumVFs writes sriov_numvfs (through 0 first, as the kernel requires to
// change a non-zero count) and, for n > 0, registers a cleanup that sets it back
// to 0 so that the next test finds the PF as it was.
func SetNumVFs(t testing.TB, pf PF, n int) {
	t.Helper()
	path := filepath.Join(sysClassNet, pf.Name, "device", "sriov_numvfs")
	write := func(v int) error {
		if err := os.WriteFile(path, []byte(strconv.Itoa(v)), 0o644); err != nil {
			return fmt.Errorf("write %d to %s: %w", v, path, err)
		}
		return nil
	}
	if err := write(0); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		return
	}
	if err := write(n); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := write(0); err != nil {
			t.Error(err)
		}
	})
}

// SetAutoprobe sets whether the kernel binds a driver to new VFs at once
// (sriov_drivers_autoprobe), restoring the old value when the test ends. Tests
// that configure a VF through the PF before its driver sees it turn it off and
// call BindVF afterwards: igbvf reads its MAC only when it probes or resets.
func SetAutoprobe(t testing.TB, pf PF, on bool) {
	t.Helper()
	path := filepath.Join(sysClassNet, pf.Name, "device", "sriov_drivers_autoprobe")
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	v := "0"
	if on {
		v = "1"
	}
	if err := os.WriteFile(path, []byte(v), 0o644); err != nil {
		t.Fatalf("write %s to %s: %v", v, path, err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(path, bytes.TrimSpace(old), 0o644); err != nil {
			t.Errorf("restore %s: %v", path, err)
		}
	})
}

// VFPCIAddr returns the PCI address of VF number vf of pf.
func VFPCIAddr(pf PF, vf int) (string, error) {
	link := filepath.Join(sysClassNet, pf.Name, "device", fmt.Sprintf("virtfn%d", vf))
	p, err := filepath.EvalSymlinks(link)
	if err != nil {
		return "", fmt.Errorf("VF %d of %s: %w", vf, pf.Name, err)
	}
	return filepath.Base(p), nil
}

// BindVF binds VF number vf of pf to driver (e.g. "igbvf" or "vfio-pci") through
// driver_override and drivers_probe: with autoprobe off, the kernel probes a VF
// only for the driver its driver_override names.
func BindVF(pf PF, vf int, driver string) error {
	addr, err := VFPCIAddr(pf, vf)
	if err != nil {
		return err
	}
	override := filepath.Join(sysBusPCI, "devices", addr, "driver_override")
	if err := os.WriteFile(override, []byte(driver), 0o644); err != nil {
		return fmt.Errorf("set driver_override of VF %d (%s) to %s: %w", vf, addr, driver, err)
	}
	if err := os.WriteFile(filepath.Join(sysBusPCI, "drivers_probe"), []byte(addr), 0o200); err != nil {
		return fmt.Errorf("probe %s for VF %d (%s): %w", driver, vf, addr, err)
	}
	return nil
}

// VFNetdev waits up to timeout for VF number vf of pf to have a netdev (its
// driver, igbvf in the guest, probes asynchronously) and returns its name.
func VFNetdev(pf PF, vf int, timeout time.Duration) (string, error) {
	dir := filepath.Join(sysClassNet, pf.Name, "device", fmt.Sprintf("virtfn%d", vf), "net")
	deadline := time.Now().Add(timeout)
	for {
		ents, err := os.ReadDir(dir)
		if err == nil && len(ents) > 0 {
			return ents[0].Name(), nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("VF %d of %s has no netdev after %s (%s)", vf, pf.Name, timeout, dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
