package sriov

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// sysfs is the root of the sysfs tree; a variable so that host tests can
// point it at a fake tree.
var sysfs = "/sys"

// VF is one virtual function of a PF as sysfs shows it.
type VF struct {
	Index  int    // N of the PF's virtfnN link
	PCI    string // e.g. 0000:01:10.0
	Driver string // bound driver, "" when none
	Netdev string // netdev name in this netns, "" when none (no kernel driver, or moved away)
}

// PF is a physical function found by its netdev name.
type PF struct {
	Name string // netdev name (network.master)
	PCI  string // PCI address
	VFs  []VF   // in index order
}

func pciDevDir(addr string) string { return filepath.Join(sysfs, "bus", "pci", "devices", addr) }

// discover reads the PF netdev name's PCI device and its VFs.
func discover(name string) (*PF, error) {
	dev := filepath.Join(sysfs, "class", "net", name, "device")
	real, err := filepath.EvalSymlinks(dev)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("PF %s: no such netdev with a PCI device (%s)", name, dev)
		}
		return nil, fmt.Errorf("PF %s: %w", name, err)
	}
	pf := &PF{Name: name, PCI: filepath.Base(real)}
	ents, err := os.ReadDir(dev)
	if err != nil {
		return nil, fmt.Errorf("PF %s: list %s: %w", name, dev, err)
	}
	for _, e := range ents {
		idx, ok := strings.CutPrefix(e.Name(), "virtfn")
		if !ok {
			continue
		}
		i, err := strconv.Atoi(idx)
		if err != nil {
			continue
		}
		target, err := filepath.EvalSymlinks(filepath.Join(dev, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("PF %s: VF %d: %w", name, i, err)
		}
		addr := filepath.Base(target)
		pf.VFs = append(pf.VFs, VF{Index: i, PCI: addr, Driver: boundDriver(addr), Netdev: netdevOf(addr)})
	}
	sort.Slice(pf.VFs, func(a, b int) bool { return pf.VFs[a].Index < pf.VFs[b].Index })
	return pf, nil
}

// boundDriver is the driver bound to the PCI device, "" when none.
func boundDriver(addr string) string {
	d, err := filepath.EvalSymlinks(filepath.Join(pciDevDir(addr), "driver"))
	if err != nil {
		return ""
	}
	return filepath.Base(d)
}

// netdevOf is the PCI device's netdev name as this netns sees it, "" when
// it has none here.
func netdevOf(addr string) string {
	ents, err := os.ReadDir(filepath.Join(pciDevDir(addr), "net"))
	if err != nil || len(ents) == 0 {
		return ""
	}
	return ents[0].Name()
}

// unbind detaches the PCI device from its driver, if any.
func unbind(addr string) error {
	drv := boundDriver(addr)
	if drv == "" {
		return nil
	}
	p := filepath.Join(sysfs, "bus", "pci", "drivers", drv, "unbind")
	if err := os.WriteFile(p, []byte(addr), 0o200); err != nil && boundDriver(addr) != "" {
		return fmt.Errorf("unbind %s from %s: %w", addr, drv, err)
	}
	return nil
}

// bind binds the PCI device to driver through driver_override and
// drivers_probe (which works whatever sriov_drivers_autoprobe says), and
// clears driver_override afterwards so that the device is not pinned.
func bind(addr, driver string) error {
	if cur := boundDriver(addr); cur == driver {
		return nil
	} else if cur != "" {
		if err := unbind(addr); err != nil {
			return err
		}
	}
	override := filepath.Join(pciDevDir(addr), "driver_override")
	if err := os.WriteFile(override, []byte(driver), 0o644); err != nil {
		return fmt.Errorf("set driver_override of %s to %s: %w", addr, driver, err)
	}
	perr := os.WriteFile(filepath.Join(sysfs, "bus", "pci", "drivers_probe"), []byte(addr), 0o200)
	// "\n" clears the override (an empty write is refused by some kernels).
	_ = os.WriteFile(override, []byte("\n"), 0o644)
	if got := boundDriver(addr); got != driver {
		if perr != nil {
			return fmt.Errorf("bind %s to %s: %w", addr, driver, perr)
		}
		return fmt.Errorf("bind %s to %s: bound to %q after probing", addr, driver, got)
	}
	return nil
}
