package kernelguest_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/telcni/telcni/kernelguest"
)

// A VF can be handed to vfio-pci (the DPDK path): it gets an IOMMU group and its
// /dev/vfio node appears.
func TestProbeVFIOBind(t *testing.T) {
	pf := kernelguest.RequireSRIOV(t)
	kernelguest.SetAutoprobe(t, pf, false)
	kernelguest.SetNumVFs(t, pf, 1)
	if err := kernelguest.BindVF(pf, 0, "vfio-pci"); err != nil {
		t.Fatal(err)
	}
	addr, err := kernelguest.VFPCIAddr(pf, 0)
	if err != nil {
		t.Fatal(err)
	}
	dev := filepath.Join("/sys/bus/pci/devices", addr)
	drv, err := filepath.EvalSymlinks(filepath.Join(dev, "driver"))
	if err != nil {
		t.Fatalf("VF %s has no driver after binding vfio-pci: %v", addr, err)
	}
	if filepath.Base(drv) != "vfio-pci" {
		t.Fatalf("VF %s is bound to %s, want vfio-pci", addr, filepath.Base(drv))
	}
	group, err := filepath.EvalSymlinks(filepath.Join(dev, "iommu_group"))
	if err != nil {
		t.Fatalf("VF %s has no IOMMU group: %v", addr, err)
	}
	node := filepath.Join("/dev/vfio", filepath.Base(group))
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(node); err == nil {
			break
		}
		if time.Now().After(deadline) {
			ents, _ := os.ReadDir("/dev/vfio")
			t.Fatalf("%s did not appear (/dev/vfio has %v)", node, ents)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("VF %s on vfio-pci, IOMMU group %s, %s", addr, filepath.Base(group), node)
}
