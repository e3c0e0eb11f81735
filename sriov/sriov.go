// Package sriov hands SR-IOV virtual functions to pods: a kernel VF moved
// into the pod's netns (path sriov) or a VF bound to vfio-pci for a DPDK
// application (path sriov-dpdk). It finds the PF and its VFs through sysfs
// and configures VFs through the PF over netlink, so it needs no vendor
// tool. A VF is taken while an attachment record holds it; the record's
// state keeps its index and PCI address, so Detach, Check and Retain work
// after an agent restart. A freed VF is reset (VLAN 0, MAC cleared,
// spoofchk on, trust off, rates 0, link auto) before another pod can get
// it.
package sriov

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/kernelpath"
)

// Keys of attach.Interface.State.
const (
	statePF       = "pf"       // PF netdev name
	statePFPCI    = "pfPCI"    // PF PCI address
	stateVF       = "vf"       // VF index
	statePCI      = "pci"      // VF PCI address
	stateDriver   = "driver"   // the VF's kernel driver, rebound on Detach
	stateHostName = "hostName" // the VF netdev's name in the host, restored on Detach
)

const vfioDriver = "vfio-pci"

// netdevTimeout bounds the wait for a VF's netdev: after a driver probe,
// and after a pod's netns is destroyed (the kernel returns physical
// netdevs to the initial netns asynchronously).
var netdevTimeout = 10 * time.Second

// carrierWait bounds how long Attach waits for a kernel VF's carrier.
var carrierWait = 3 * time.Second

// Path implements attach.Path and attach.Retainer for sriov and sriov-dpdk.
type Path struct {
	log  *slog.Logger
	host *netlink.Handle

	mu sync.Mutex
	// taken maps "pf/vf" to the owner ("containerID/ifname") of each VF
	// an attachment holds, from the moment Attach picks it until Detach
	// has reset it.
	taken map[string]string
	// kdrv remembers each PF's VF kernel driver, learned from its VFs.
	kdrv map[string]string
	// uplinks are the VFs lent to VPP uplinks, by network (uplink.go);
	// each is also in taken, held by uplinkOwner(network).
	uplinks map[string]attach.UplinkVF
	// uplinkMu serialises lending and returning uplink VFs.
	uplinkMu sync.Mutex
}

var (
	_ attach.Path     = (*Path)(nil)
	_ attach.Retainer = (*Path)(nil)
	_ attach.VFLender = (*Path)(nil)
)

// Kinds are the network paths this package serves.
func Kinds() []api.PathKind { return []api.PathKind{api.PathSRIOV, api.PathSRIOVDPDK} }

// New returns the SR-IOV path. PFs are found in the agent's own netns
// (the node's): that is where the kernel returns VFs of destroyed pod
// namespaces.
func New(log *slog.Logger) *Path {
	return &Path{log: log, host: &netlink.Handle{}, taken: map[string]string{}, kdrv: map[string]string{},
		uplinks: map[string]attach.UplinkVF{}}
}

func vfKey(pf string, vf int) string          { return pf + "/" + strconv.Itoa(vf) }
func owner(containerID, ifName string) string { return containerID + "/" + ifName }

// usable lists the VFs of pf the network may use.
func usable(n *api.Network, pf *PF) ([]VF, error) {
	if n.SRIOV == nil || n.SRIOV.VFs == "" {
		return pf.VFs, nil
	}
	want, err := api.ParseVFList(n.SRIOV.VFs)
	if err != nil {
		return nil, attach.Errorf(attach.CodeInvalidConfig, "network %s: sriov.vfs: %v", n.Key(), err)
	}
	var out []VF
	for _, vf := range pf.VFs {
		if slices.Contains(want, vf.Index) {
			out = append(out, vf)
		}
	}
	return out, nil
}

// kernelDriver is the kernel driver of pf's VFs: vf's own when it has a
// non-vfio one, else a sibling's, else what was learned before.
func (p *Path) kernelDriver(pf *PF, vf VF) string {
	isKernel := func(d string) bool { return d != "" && d != vfioDriver && d != "uio_pci_generic" && d != "igb_uio" }
	if isKernel(vf.Driver) {
		p.kdrv[pf.Name] = vf.Driver
		return vf.Driver
	}
	for _, o := range pf.VFs {
		if isKernel(o.Driver) {
			p.kdrv[pf.Name] = o.Driver
			return o.Driver
		}
	}
	return p.kdrv[pf.Name]
}

// reserve picks a free usable VF of the network's PF and marks it taken.
//
// sysfs is read outside the lock, so concurrent ADDs on one PF do not queue
// behind each other's reads of every VF; the lock guards only the taken
// set. That snapshot may predate a DEL that frees a VF before the lock is
// taken (its driver and netdev read half-way through the reset), so the
// chosen VF's driver and netdev are read again once it is marked taken:
// from then on only its holder changes it.
func (p *Path) reserve(req *attach.Request) (*PF, VF, string, error) {
	n := req.Network
	pf, err := discover(n.Master)
	if err != nil {
		return nil, VF{}, "", attach.Errorf(attach.CodeInvalidConfig, "network %s: %v", n.Key(), err)
	}
	if len(pf.VFs) == 0 {
		return nil, VF{}, "", attach.Errorf(attach.CodeNotAvailable, "network %s: PF %s (%s) has no VFs (sriov_numvfs is 0)", n.Key(), pf.Name, pf.PCI)
	}
	cands, err := usable(n, pf)
	if err != nil {
		return nil, VF{}, "", err
	}
	who := owner(req.ContainerID, req.IfName)
	if req.DeviceID != "" {
		if cands, err = p.deviceVF(n, pf, cands, req.DeviceID); err != nil {
			return nil, VF{}, "", err
		}
	}
	cands, busy := p.unopened(pf.Name, cands)
	if len(cands) == 0 && req.DeviceID != "" {
		return nil, VF{}, "", attach.Errorf(attach.CodeNoFreeDevice, "network %s: deviceID %s (a VF of PF %s) is bound to vfio-pci and open through vfio by a process outside telcni (VPP's DPDK?)",
			n.Key(), req.DeviceID, pf.Name)
	}
	vf, ok := p.take(pf.Name, cands, who)
	if !ok && req.DeviceID != "" {
		return nil, VF{}, "", attach.Errorf(attach.CodeNoFreeDevice, "network %s: deviceID %s (VF %d of PF %s) is held by %s",
			n.Key(), req.DeviceID, cands[0].Index, pf.Name, p.holder(pf.Name, cands[0].Index))
	}
	if !ok {
		return nil, VF{}, "", attach.Errorf(attach.CodeNoFreeDevice, "network %s: no free VF on PF %s (%d of its %d VFs usable, all taken%s)", n.Key(), pf.Name, len(cands), len(pf.VFs), p.takenNote(pf.Name, busy))
	}
	vf.Driver, vf.Netdev = boundDriver(vf.PCI), netdevOf(vf.PCI)
	p.mu.Lock()
	drv := p.kernelDriver(pf, vf)
	p.mu.Unlock()
	if drv == "" && n.Path == api.PathSRIOV {
		p.release(pf.Name, vf.Index, who)
		return nil, VF{}, "", attach.Errorf(attach.CodeNotAvailable, "network %s: PF %s: no VF is bound to a kernel driver, cannot tell which driver VF %d needs", n.Key(), pf.Name, vf.Index)
	}
	return pf, vf, drv, nil
}

// deviceVF narrows cands to the VF the device plugin allocated (its PCI
// address, runtimeConfig.deviceID as Multus passes it).
func (p *Path) deviceVF(n *api.Network, pf *PF, cands []VF, pci string) ([]VF, error) {
	for _, vf := range pf.VFs {
		if vf.PCI != pci {
			continue
		}
		for _, c := range cands {
			if c.Index == vf.Index {
				return []VF{c}, nil
			}
		}
		return nil, attach.Errorf(attach.CodeInvalidConfig, "network %s: deviceID %s is VF %d of PF %s, outside the network's sriov.vfs %q",
			n.Key(), pci, vf.Index, pf.Name, n.SRIOV.VFs)
	}
	return nil, attach.Errorf(attach.CodeInvalidConfig, "network %s: deviceID %s is not a VF of PF %s (%s)", n.Key(), pci, pf.Name, pf.PCI)
}

// holder names who holds VF vf of pf ("container/ifname").
func (p *Path) holder(pf string, vf int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.taken[vfKey(pf, vf)]
}

// take marks the first of cands that nothing holds as held by who.
func (p *Path) take(pf string, cands []VF, who string) (VF, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, vf := range cands {
		if _, ok := p.taken[vfKey(pf, vf.Index)]; !ok {
			p.taken[vfKey(pf, vf.Index)] = who
			return vf, true
		}
	}
	return VF{}, false
}

func (p *Path) release(pf string, vf int, who string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.taken[vfKey(pf, vf)] == who {
		delete(p.taken, vfKey(pf, vf))
	}
}

// Attach takes a free VF, configures it through the PF and hands it to the
// pod; on failure it resets and frees the VF.
func (p *Path) Attach(ctx context.Context, req *attach.Request) (*attach.Interface, error) {
	n := req.Network
	if !n.Path.IsSRIOV() {
		return nil, attach.Errorf(attach.CodeInvalidConfig, "network %s: path %s is not served by the sriov path", n.Key(), n.Path)
	}
	mac := randomMAC()
	if req.MAC != "" {
		m, err := net.ParseMAC(req.MAC)
		if err != nil || len(m) != 6 {
			return nil, attach.Errorf(attach.CodeInvalidConfig, "mac %q is not an Ethernet MAC", req.MAC)
		}
		mac = m
	}
	pf, vf, drv, err := p.reserve(req)
	if err != nil {
		return nil, err
	}
	state := map[string]string{
		statePF: pf.Name, statePFPCI: pf.PCI, stateVF: strconv.Itoa(vf.Index), statePCI: vf.PCI,
		stateDriver: drv, stateHostName: vf.Netdev,
	}
	var iface *attach.Interface
	if n.Path == api.PathSRIOVDPDK {
		iface, err = p.attachDPDK(req, pf, vf, mac)
	} else {
		iface, err = p.attachKernel(req, pf, vf, drv, mac, state)
	}
	if err != nil {
		rec := &attach.Record{Request: *req, Interface: attach.Interface{State: state}}
		if derr := p.Detach(ctx, rec); derr != nil {
			p.log.Warn("rollback: reset VF", "pf", pf.Name, "vf", vf.Index, "err", derr)
		}
		return nil, err
	}
	iface.State = state
	p.log.Debug("attached", "container", req.ContainerID, "ifname", req.IfName, "network", n.Key(), "pf", pf.Name, "vf", vf.Index, "pci", vf.PCI)
	return iface, nil
}

// program unbinds the VF, configures it through the PF for the network
// (VLAN, MAC, spoofchk, trust, rates, link state) and binds it to drv.
func (p *Path) program(req *attach.Request, pf *PF, vf VF, mac net.HardwareAddr, drv string) error {
	if err := unbind(vf.PCI); err != nil {
		return err
	}
	if err := apply(p.host, pf.Name, vf.Index, wantSettings(req.Network, mac)); err != nil {
		return err
	}
	if err := bind(vf.PCI, drv); err != nil {
		return fmt.Errorf("PF %s VF %d: %w", pf.Name, vf.Index, err)
	}
	return nil
}

func (p *Path) attachDPDK(req *attach.Request, pf *PF, vf VF, mac net.HardwareAddr) (*attach.Interface, error) {
	if err := p.program(req, pf, vf, mac, vfioDriver); err != nil {
		return nil, err
	}
	return &attach.Interface{
		Name: req.IfName, MAC: mac.String(), Sandbox: req.Netns,
		DeviceInfo: &api.DeviceInfo{Type: api.DeviceInfoPCI, Version: api.DeviceInfoVersion,
			PCI: &api.PCIDevice{PCIAddress: vf.PCI, PFPCIAddress: pf.PCI}},
	}, nil
}

// attachKernel unbinds the VF, configures it through the PF, binds its
// kernel driver again (drivers such as igbvf read the MAC only when they
// probe), and moves the fresh netdev into the pod.
func (p *Path) attachKernel(req *attach.Request, pf *PF, vf VF, drv string, mac net.HardwareAddr, state map[string]string) (*attach.Interface, error) {
	target, h, done, err := kernelpath.PodNetns(req.Netns)
	if err != nil {
		return nil, err
	}
	defer done()
	if _, err := h.LinkByName(req.IfName); err == nil {
		return nil, attach.Errorf(attach.CodeInvalidConfig, "interface %s already exists in netns %s", req.IfName, req.Netns)
	}
	if err := p.program(req, pf, vf, mac, drv); err != nil {
		return nil, err
	}
	// Found by PCI address from here on: udev may rename a new netdev
	// (predictable names) at any moment.
	link, err := p.hostLink(vf.PCI)
	if err != nil {
		return nil, fmt.Errorf("PF %s VF %d: %w", pf.Name, vf.Index, err)
	}
	name := link.Attrs().Name
	// The host name to give back at DEL is the VF's before this pod took
	// it; the one the rebound driver just chose (eth1...) is only kept
	// when the VF had none.
	if state[stateHostName] == "" {
		state[stateHostName] = name
	}
	if n := req.Network.MTU; n != 0 {
		if err := p.host.LinkSetMTU(link, n); err != nil {
			return nil, fmt.Errorf("set mtu %d on VF %d netdev %s: %w", n, vf.Index, name, err)
		}
	}
	// Moved under a name derived from its PCI address: the kernel name
	// (eth1, ...) may well exist in the pod already.
	if tmp := neutralName(vf.PCI); link.Attrs().Name != tmp {
		if err := p.host.LinkSetName(link, tmp); err != nil {
			return nil, fmt.Errorf("rename VF %d netdev %s to %s: %w", vf.Index, link.Attrs().Name, tmp, err)
		}
	}
	if err := p.host.LinkSetNsFd(link, int(target)); err != nil {
		return nil, fmt.Errorf("move VF %d netdev %s into %s: %w", vf.Index, name, req.Netns, err)
	}
	if link = findByPCI(h, vf.PCI); link == nil {
		return nil, fmt.Errorf("VF %d netdev %s not found in %s after the move", vf.Index, name, req.Netns)
	}
	// The MAC is the VF's, set through the PF: the VF driver must not be
	// asked to change it (a PF may refuse a VF's own MAC change).
	creq := *req
	creq.MAC = ""
	if err := kernelpath.SetARPStrict(target, link); err != nil {
		return nil, err
	}
	iface, err := kernelpath.ConfigureLink(h, link, &creq)
	if err != nil {
		return nil, err
	}
	if err := kernelpath.ApplyFirewall(target, req); err != nil {
		return nil, err
	}
	if o := req.Network.SRIOV; o == nil || o.LinkState != "disable" {
		// A freshly probed VF gets its carrier a few hundred ms later;
		// waiting (bounded) makes the interface usable when ADD returns.
		// A VF whose PF has no link is not an error: the pod gets it down.
		deadline := time.Now().Add(carrierWait)
		for {
			l, err := h.LinkByIndex(link.Attrs().Index)
			if err != nil || l.Attrs().OperState == netlink.OperUp || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	iface.Sandbox = req.Netns
	iface.DeviceInfo = &api.DeviceInfo{Type: api.DeviceInfoPCI, Version: api.DeviceInfoVersion,
		PCI: &api.PCIDevice{PCIAddress: vf.PCI, PFPCIAddress: pf.PCI}}
	return iface, nil
}

// recVF reads the VF a record holds from its state.
func recVF(rec *attach.Record) (pf string, vf int, pci string, ok bool) {
	s := rec.Interface.State
	vf, err := strconv.Atoi(s[stateVF])
	if s[statePF] == "" || s[statePCI] == "" || err != nil {
		return "", 0, "", false
	}
	return s[statePF], vf, s[statePCI], true
}

// Detach returns the VF to the host and resets it through the PF, then
// frees it. It is idempotent, and works when the pod's netns is gone.
func (p *Path) Detach(ctx context.Context, rec *attach.Record) error {
	pf, vf, pci, ok := recVF(rec)
	if !ok {
		return nil // nothing was taken
	}
	who := owner(rec.ContainerID, rec.IfName)
	// The VF stays taken (claimed here if nothing held it, e.g. when
	// start-up undoes an interrupted ADD before Retain) until it is reset,
	// so no Attach can get it half-way through.
	p.mu.Lock()
	holder, held := p.taken[vfKey(pf, vf)]
	if !held {
		p.taken[vfKey(pf, vf)] = who
	}
	p.mu.Unlock()
	if held && holder != who {
		p.log.Warn("detach: VF is held by another attachment, left alone", "pf", pf, "vf", vf, "holder", holder, "record", who)
		return nil
	}
	s := rec.Interface.State
	if rec.Network != nil && rec.Network.Path == api.PathSRIOVDPDK {
		if err := unbind(pci); err != nil {
			return err
		}
		if err := apply(p.host, pf, vf, defaults); err != nil {
			return fmt.Errorf("reset: %w", err)
		}
		if drv := s[stateDriver]; drv != "" {
			if err := bind(pci, drv); err != nil {
				return fmt.Errorf("PF %s VF %d: give back to %s: %w", pf, vf, drv, err)
			}
		}
	} else {
		if err := p.returnNetdev(rec, pci, s[stateHostName]); err != nil {
			return err
		}
		if err := apply(p.host, pf, vf, defaults); err != nil {
			return fmt.Errorf("reset: %w", err)
		}
		// An Attach that failed between unbinding and binding left the VF
		// without its driver: give it back.
		if drv := s[stateDriver]; drv != "" && boundDriver(pci) == "" {
			if err := bind(pci, drv); err != nil {
				return fmt.Errorf("PF %s VF %d: give back to %s: %w", pf, vf, drv, err)
			}
		}
	}
	p.release(pf, vf, who)
	return nil
}

// returnNetdev brings a kernel VF's netdev back into the host netns under
// its host name, down. When the pod's netns is gone the kernel has moved
// (or is moving) the netdev to the initial netns itself.
func (p *Path) returnNetdev(rec *attach.Record, pci, hostName string) error {
	if boundDriver(pci) == "" || boundDriver(pci) == vfioDriver {
		return nil // no netdev (an Attach that failed before the driver bound)
	}
	if target, err := netns.GetFromPath(rec.Netns); err == nil {
		err := p.fromPod(target, rec, pci, hostName)
		target.Close()
		if err != nil {
			return err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("open netns %s: %w", rec.Netns, err)
	}
	return p.netdevBack(pci, hostName)
}

// netdevBack sets the VF's netdev in the host netns down and gives it its
// host name back.
func (p *Path) netdevBack(pci, hostName string) error {
	link, err := p.hostLink(pci)
	if err != nil {
		return err
	}
	if err := p.host.LinkSetDown(link); err != nil {
		return fmt.Errorf("set VF %s netdev %s down: %w", pci, link.Attrs().Name, err)
	}
	if hostName != "" && link.Attrs().Name != hostName {
		// Kernel names (eth%d) of netdevs moved away get reused: a VF
		// bound to its driver by a concurrent ADD holds the name for the
		// few ms before that ADD renames it, so the name is retried for a
		// moment; when another netdev keeps it, the VF keeps a neutral one.
		err := p.host.LinkSetName(link, hostName)
		for deadline := time.Now().Add(2 * time.Second); errors.Is(err, unix.EEXIST) && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
			err = p.host.LinkSetName(link, hostName)
		}
		if errors.Is(err, unix.EEXIST) {
			p.log.Info("detach: VF's host name is taken, keeping a neutral one", "pci", pci, "name", link.Attrs().Name, "hostName", hostName)
		} else if err != nil {
			return fmt.Errorf("rename VF %s netdev %s back to %s: %w", pci, link.Attrs().Name, hostName, err)
		}
	}
	if link.Attrs().Alias != "" {
		_ = p.host.LinkSetAlias(link, "")
	}
	return nil
}

// fromPod moves the VF's netdev, if it is in the pod's netns, to the host
// under its host name.
func (p *Path) fromPod(target netns.NsHandle, rec *attach.Record, pci, hostName string) error {
	h, err := netlink.NewHandleAt(target)
	if err != nil {
		return fmt.Errorf("netlink handle in %s: %w", rec.Netns, err)
	}
	defer h.Close()
	link := findByPCI(h, pci)
	if link == nil {
		return nil
	}
	_ = kernelpath.DeletePolicyRules(h, rec)
	if err := kernelpath.RemoveFirewall(target, rec); err != nil {
		return err
	}
	if err := h.LinkSetDown(link); err != nil {
		return fmt.Errorf("set %s down in %s: %w", link.Attrs().Name, rec.Netns, err)
	}
	// Renamed in the pod first to a name derived from the PCI address: the
	// pod's name (and even the host name) may be taken in the host.
	if tmp := neutralName(pci); link.Attrs().Name != tmp {
		if err := h.LinkSetName(link, tmp); err != nil {
			return fmt.Errorf("rename %s to %s in %s: %w", link.Attrs().Name, tmp, rec.Netns, err)
		}
	}
	hostNS, err := netns.Get()
	if err != nil {
		return fmt.Errorf("open the host netns: %w", err)
	}
	defer hostNS.Close()
	if err := h.LinkSetNsFd(link, int(hostNS)); err != nil {
		return fmt.Errorf("move VF %s netdev out of %s: %w", pci, rec.Netns, err)
	}
	return nil
}

// neutralName is a VF netdev name no one else uses: "vf" and the PCI
// address's bus, device and function ("0000:01:10.2" -> "vf01102"; the
// domain too when not 0).
func neutralName(pci string) string {
	d, rest, _ := strings.Cut(pci, ":")
	n := "vf" + strings.NewReplacer(":", "", ".", "").Replace(rest)
	if d != "0000" {
		n = "vf" + strings.NewReplacer(":", "", ".", "").Replace(pci)
	}
	if len(n) > 15 {
		n = n[:15]
	}
	return n
}

// hostLink finds the VF's netdev in the host netns by PCI address, waiting
// for the kernel to bring it back from a destroyed netns.
func (p *Path) hostLink(pci string) (netlink.Link, error) {
	deadline := time.Now().Add(netdevTimeout)
	for {
		if l := findByPCI(p.host, pci); l != nil {
			return l, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("VF %s: its netdev did not come back to the host netns within %s", pci, netdevTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// findByPCI returns the link in h's netns whose parent device is pci.
func findByPCI(h *netlink.Handle, pci string) netlink.Link {
	links, err := h.LinkList()
	if err != nil {
		return nil
	}
	for _, l := range links {
		if a := l.Attrs(); a.ParentDevBus == "pci" && a.ParentDev == pci {
			return l
		}
	}
	return nil
}

// Check verifies that the VF is still configured as recorded: the PF's
// view of its VLAN and MAC, and the pod side (the netdev in the pod, or
// the vfio-pci binding).
func (p *Path) Check(ctx context.Context, rec *attach.Record) error {
	pf, vf, pci, ok := recVF(rec)
	if !ok {
		return attach.Errorf(attach.CodeCheckFailed, "%s: the record names no VF", rec.IfName)
	}
	fail := func(format string, args ...any) error {
		return attach.Errorf(attach.CodeCheckFailed, "PF %s VF %d (%s): "+format, append([]any{pf, vf, pci}, args...)...)
	}
	_, info, err := vfInfo(p.host, pf, vf)
	if err != nil {
		return fail("%v", err)
	}
	mac, _ := net.ParseMAC(rec.Interface.MAC)
	if d := differs(info, wantSettings(rec.Network, mac)); d != "" {
		return fail("%s", d)
	}
	if rec.Network.Path == api.PathSRIOVDPDK {
		if d := boundDriver(pci); d != vfioDriver {
			return fail("bound to %q, not %s", d, vfioDriver)
		}
		return nil
	}
	target, err := netns.GetFromPath(rec.Netns)
	if err != nil {
		return attach.WithCode(attach.CodeCheckFailed, fmt.Errorf("open netns %s: %w", rec.Netns, err))
	}
	defer target.Close()
	h, err := netlink.NewHandleAt(target)
	if err != nil {
		return fmt.Errorf("netlink handle in %s: %w", rec.Netns, err)
	}
	defer h.Close()
	link := findByPCI(h, pci)
	if link == nil {
		return fail("netdev not in %s", rec.Netns)
	}
	if a := link.Attrs(); a.Name != rec.IfName {
		return fail("netdev is %s, want %s", a.Name, rec.IfName)
	}
	return kernelpath.CheckLink(h, target, link, rec)
}

// Retain rebuilds which VFs pods hold from the records of ready
// attachments (at agent start).
func (p *Path) Retain(ctx context.Context, recs []*attach.Record) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	// VFs lent to VPP uplinks are RetainUplinks' to rebuild.
	for k, who := range p.taken {
		if !isUplinkOwner(who) {
			delete(p.taken, k)
		}
	}
	for _, rec := range recs {
		if pf, vf, _, ok := recVF(rec); ok {
			p.taken[vfKey(pf, vf)] = owner(rec.ContainerID, rec.IfName)
		}
	}
	return nil
}
