package sriov

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/telcni/telcni/attach"
)

// VFs lent to VPP uplinks (attach.VFLender). A network whose VPP uplink is
// {kind: avf, pf: X} or {kind: dpdk-vf, pf: X} borrows one VF of PF X
// from the same pool pods take theirs from: it is marked taken (held by
// "uplink of network N") from TakeForUplink until ReturnUplink, so no pod
// gets it meanwhile. The lease's record lives in the attachment records of
// the network's pods (vppagent writes it into their Interface.State), so
// RetainUplinks rebuilds it after an agent restart, as Retain does for
// pods' VFs.

// devVFIO is where vfio group nodes live; a variable for tests.
var devVFIO = "/dev/vfio"

const uplinkOwnerPrefix = "uplink of network "

// uplinkOwner is the holder of a VF lent to network's uplink in the taken
// set: not a "container/ifname", and said as such in errors ("VF 1 of PF
// eth1 is held by uplink of network ns/x").
func uplinkOwner(network string) string { return uplinkOwnerPrefix + network }

func isUplinkOwner(who string) bool { return strings.HasPrefix(who, uplinkOwnerPrefix) }

// uplinkSettings are what a lent VF is configured with through its PF: a
// MAC of its own for the lease, and, as the uplink of an L2 bridge domain
// carries the pods' frames, no spoof check and trust (promiscuous mode on
// NICs that ask for it).
func uplinkSettings() settings {
	s := defaults
	s.MAC = randomMAC()
	s.SpoofChk = false
	s.Trust = true
	return s
}

// TakeForUplink lends network a free VF of pf, unbound from its kernel
// driver and bound to bindAs (vfio-pci, which VPP's avf and DPDK drivers
// both need).
func (p *Path) TakeForUplink(ctx context.Context, network, pfName, bindAs string, adopt func(pci string) bool) (attach.UplinkVF, error) {
	if bindAs == "" {
		bindAs = vfioDriver
	}
	p.uplinkMu.Lock()
	defer p.uplinkMu.Unlock()
	p.mu.Lock()
	l, held := p.uplinks[network]
	p.mu.Unlock()
	if held {
		if l.PF != pfName {
			return attach.UplinkVF{}, attach.Errorf(attach.CodeInvalidConfig,
				"PF %s: the network's uplink holds VF %d of PF %s while pods still use it", pfName, l.VF, l.PF)
		}
		if l.Adopted {
			return l, nil // the borrower's as it was
		}
		if err := bind(l.PCI, bindAs); err != nil {
			return attach.UplinkVF{}, fmt.Errorf("PF %s VF %d: %w", l.PF, l.VF, err)
		}
		return l, nil
	}
	pf, err := discover(pfName)
	if err != nil {
		return attach.UplinkVF{}, attach.WithCode(attach.CodeInvalidConfig, err)
	}
	if len(pf.VFs) == 0 {
		return attach.UplinkVF{}, attach.Errorf(attach.CodeNotAvailable, "PF %s (%s) has no VFs (sriov_numvfs is 0)", pf.Name, pf.PCI)
	}
	who := uplinkOwner(network)
	// A VF the borrower has open already (VPP's DPDK plugin bound and
	// opened it at its start, as startup.conf lists it) is lent as it is:
	// unbinding it would block until VPP let it go.
	if adopt != nil {
		var mine []VF
		for _, vf := range pf.VFs {
			if adopt(vf.PCI) {
				mine = append(mine, vf)
			}
		}
		if vf, ok := p.take(pf.Name, mine, who); ok {
			p.mu.Lock()
			drv := p.kernelDriver(pf, vf)
			l = attach.UplinkVF{Network: network, PF: pf.Name, VF: vf.Index, PCI: vf.PCI, Driver: drv, BindAs: boundDriver(vf.PCI), Adopted: true}
			p.uplinks[network] = l
			p.mu.Unlock()
			p.log.Info("VF the borrower has open lent to a VPP uplink as it is", "network", network, "pf", pf.Name, "vf", vf.Index, "pci", vf.PCI, "driver", l.BindAs)
			return l, nil
		}
	}
	cands, busy := p.unopened(pf.Name, pf.VFs)
	vf, ok := p.take(pf.Name, cands, who)
	if !ok {
		return attach.UplinkVF{}, attach.Errorf(attach.CodeNoFreeDevice, "no free VF on PF %s (all %d taken%s)", pf.Name, len(pf.VFs), p.takenNote(pf.Name, busy))
	}
	// Read again now that it is ours (see reserve).
	vf.Driver, vf.Netdev = boundDriver(vf.PCI), netdevOf(vf.PCI)
	p.mu.Lock()
	drv := p.kernelDriver(pf, vf)
	p.mu.Unlock()
	l = attach.UplinkVF{Network: network, PF: pf.Name, VF: vf.Index, PCI: vf.PCI, Driver: drv, HostName: vf.Netdev, BindAs: bindAs}
	if err := p.lend(l); err != nil {
		if berr := p.giveBack(l); berr != nil {
			// Left taken: a VF in an unknown state is given to no pod.
			p.log.Warn("uplink VF: rollback failed, the VF stays out of the pool", "network", network, "pf", pf.Name, "vf", vf.Index, "pci", vf.PCI, "err", berr)
			return attach.UplinkVF{}, err
		}
		p.release(pf.Name, vf.Index, who)
		return attach.UplinkVF{}, err
	}
	p.mu.Lock()
	p.uplinks[network] = l
	p.mu.Unlock()
	p.log.Info("VF lent to a VPP uplink", "network", network, "pf", pf.Name, "vf", vf.Index, "pci", vf.PCI, "driver", bindAs, "kernelDriver", drv)
	return l, nil
}

// lend unbinds the VF from its kernel driver, configures it through the PF
// and binds it to l.BindAs.
func (p *Path) lend(l attach.UplinkVF) error {
	if err := unbind(l.PCI); err != nil {
		return err
	}
	s := uplinkSettings()
	if err := apply(p.host, l.PF, l.VF, s); err != nil {
		if attach.CodeOf(err) != attach.CodeInvalidConfig {
			return err
		}
		// A PF driver that refuses trust or the spoof check still lends
		// the VF: VPP then sees only its own MAC's frames.
		p.log.Warn("uplink VF: the PF refuses a setting, lent without it", "pf", l.PF, "vf", l.VF, "err", err)
		base := defaults
		base.MAC = s.MAC
		if err := apply(p.host, l.PF, l.VF, base); err != nil {
			return err
		}
	}
	if err := bind(l.PCI, l.BindAs); err != nil {
		return fmt.Errorf("PF %s VF %d: %w", l.PF, l.VF, err)
	}
	return nil
}

// giveBack resets the VF and binds its kernel driver again, with its host
// netdev name. A VF still open through vfio is left alone: unbinding it
// from vfio-pci would block until its user (VPP) lets it go.
func (p *Path) giveBack(l attach.UplinkVF) error {
	if boundDriver(l.PCI) == vfioDriver {
		if busy, node := vfioBusy(l.PCI); busy {
			return fmt.Errorf("VF %s is still open through %s (VPP holds it)", l.PCI, node)
		}
	}
	if err := unbind(l.PCI); err != nil {
		return err
	}
	if err := apply(p.host, l.PF, l.VF, defaults); err != nil {
		return fmt.Errorf("reset: %w", err)
	}
	if l.Driver == "" {
		return nil
	}
	if err := bind(l.PCI, l.Driver); err != nil {
		return fmt.Errorf("PF %s VF %d: give back to %s: %w", l.PF, l.VF, l.Driver, err)
	}
	if netdevOf(l.PCI) == "" && l.HostName == "" {
		return nil // a driver without netdevs
	}
	return p.netdevBack(l.PCI, l.HostName)
}

// ReturnUplink gives the VF lent to network's uplink back to the pool.
func (p *Path) ReturnUplink(ctx context.Context, network string) error {
	p.uplinkMu.Lock()
	defer p.uplinkMu.Unlock()
	p.mu.Lock()
	l, ok := p.uplinks[network]
	p.mu.Unlock()
	if !ok {
		return nil
	}
	if l.Adopted {
		// The borrower's own (VPP's, from its startup.conf): left as it
		// is, free in the pool; no pod gets it while it is open.
		p.mu.Lock()
		delete(p.uplinks, network)
		p.mu.Unlock()
		p.release(l.PF, l.VF, uplinkOwner(network))
		p.log.Info("VF lent as it was released from a VPP uplink, left as it is", "network", network, "pf", l.PF, "vf", l.VF, "pci", l.PCI)
		return nil
	}
	if err := p.giveBack(l); err != nil {
		return fmt.Errorf("return VF %d of PF %s (%s) from the uplink of network %s: %w", l.VF, l.PF, l.PCI, network, err)
	}
	p.mu.Lock()
	delete(p.uplinks, network)
	p.mu.Unlock()
	p.release(l.PF, l.VF, uplinkOwner(network))
	p.log.Info("VF returned from a VPP uplink", "network", network, "pf", l.PF, "vf", l.VF, "pci", l.PCI, "driver", l.Driver)
	return nil
}

// RetainUplinks makes leases the VFs lent to uplinks (at agent start, from
// the records), leaving the pods' VFs to Retain.
func (p *Path) RetainUplinks(leases []attach.UplinkVF) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, who := range p.taken {
		if isUplinkOwner(who) {
			delete(p.taken, k)
		}
	}
	p.uplinks = map[string]attach.UplinkVF{}
	for _, l := range leases {
		k := vfKey(l.PF, l.VF)
		if who, ok := p.taken[k]; ok {
			p.log.Warn("uplink VF is also recorded for a pod; the pod keeps it", "network", l.Network, "pf", l.PF, "vf", l.VF, "pod", who)
			continue
		}
		p.taken[k] = uplinkOwner(l.Network)
		p.uplinks[l.Network] = l
	}
}

// vfioBusy reports whether the PCI device's vfio group is open: the
// kernel lets one process at a time open a group, so an open that fails
// with EBUSY means a user (VPP, a DPDK application) has it.
func vfioBusy(pci string) (bool, string) {
	g, err := filepath.EvalSymlinks(filepath.Join(pciDevDir(pci), "iommu_group"))
	if err != nil {
		return false, ""
	}
	id := filepath.Base(g)
	for _, node := range []string{filepath.Join(devVFIO, id), filepath.Join(devVFIO, "noiommu-"+id)} {
		f, err := os.OpenFile(node, os.O_RDWR, 0)
		if errors.Is(err, unix.EBUSY) {
			return true, node
		}
		if err == nil {
			_ = f.Close()
			return false, node
		}
	}
	return false, ""
}

// takenNote says, for errors, how many of pf's VFs are lent to uplinks
// and how many were left out as open through vfio ("" when none).
func (p *Path) takenNote(pf string, busy int) string {
	p.mu.Lock()
	n := 0
	for _, l := range p.uplinks {
		if l.PF == pf {
			n++
		}
	}
	p.mu.Unlock()
	s := ""
	if n > 0 {
		s += fmt.Sprintf("; %d lent to VPP uplinks", n)
	}
	if busy > 0 {
		s += fmt.Sprintf("; %d open through vfio by a process outside telcni (VPP's DPDK?)", busy)
	}
	return s
}

// unopened leaves out of vfs those nothing holds that are bound to
// vfio-pci with their group open (VPP's DPDK plugin took them at its
// start, or another DPDK application did): handing one out would block
// on its unbind. VFs held here are not probed (their pod's application
// may be opening the group). busy counts what was left out.
func (p *Path) unopened(pf string, vfs []VF) (out []VF, busy int) {
	p.mu.Lock()
	free := make([]bool, len(vfs))
	for i, vf := range vfs {
		_, held := p.taken[vfKey(pf, vf.Index)]
		free[i] = !held
	}
	p.mu.Unlock()
	for i, vf := range vfs {
		if free[i] && vf.Driver == vfioDriver {
			if b, _ := vfioBusy(vf.PCI); b {
				busy++
				continue
			}
		}
		out = append(out, vf)
	}
	return out, busy
}
