package kernelpath

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"strconv"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
)

// HostAlias marks the host VLAN and VXLAN links telcni made and may remove.
// A matching link that an operator made is used but never removed.
const HostAlias = "telcni:host"

// vxlanDefaultPort is the IANA VXLAN port, used when a network sets none.
const vxlanDefaultPort = 4789

// HostLinkName is the name of the host link a vlan or vxlan network uses:
// "<master>.<vlan>" as operators expect, or a hashed name when that does
// not fit in 15 characters; "vx<vni>" for VXLAN. Networks with the same
// master and VLAN share one host link (it is one L2 segment).
func HostLinkName(n *api.Network) string {
	switch n.Path {
	case api.PathVLAN:
		if name := n.Master + "." + strconv.Itoa(n.VLAN); len(name) <= 15 {
			return name
		}
		h := fnv.New32a()
		h.Write([]byte(n.Master))
		return fmt.Sprintf("tv%06x.%d", h.Sum32()&0xffffff, n.VLAN)
	case api.PathVXLAN:
		return "vx" + strconv.Itoa(n.VXLAN.VNI)
	}
	return ""
}

// usesHostLink reports whether the network's pods hang off a shared host
// link (vlan/vxlan in macvlan or ipvlan mode).
func usesHostLink(n *api.Network) bool {
	return (n.Path == api.PathVLAN || n.Path == api.PathVXLAN) && n.EffectiveMode() != "direct"
}

// ensureHostLink returns the network's host link, creating it when absent.
// Callers hold p.hostMu.
func (p *Path) ensureHostLink(n *api.Network) (netlink.Link, error) {
	name := HostLinkName(n)
	want, err := p.hostLinkSpec(n, name)
	if err != nil {
		return nil, err
	}
	if l, err := p.host.LinkByName(name); err == nil {
		if err := sameHostLink(l, want); err != nil {
			return nil, attach.Errorf(attach.CodeInvalidConfig, "network %s: host link %s exists but %v", n.Key(), name, err)
		}
		return l, nil
	}
	if err := p.host.LinkAdd(want); err != nil {
		return nil, fmt.Errorf("network %s: create host link %s: %w", n.Key(), name, err)
	}
	l, err := p.host.LinkByName(name)
	if err == nil {
		err = p.host.LinkSetAlias(l, HostAlias)
	}
	if err == nil {
		err = p.host.LinkSetUp(l)
	}
	if err != nil {
		_ = p.host.LinkDel(want)
		return nil, fmt.Errorf("network %s: set up host link %s: %w", n.Key(), name, err)
	}
	p.log.Info("host link created", "link", name, "network", n.Key())
	return l, nil
}

// hostLinkSpec is the link a vlan or vxlan network needs in the host netns.
func (p *Path) hostLinkSpec(n *api.Network, name string) (netlink.Link, error) {
	switch n.Path {
	case api.PathVLAN:
		master, err := hostLink(p.host, n.Master, n.Key())
		if err != nil {
			return nil, err
		}
		if err := checkMTU(n, master); err != nil {
			return nil, err
		}
		return &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: name, ParentIndex: master.Attrs().Index}, VlanId: n.VLAN}, nil
	case api.PathVXLAN:
		return p.vxlanSpec(n, name)
	}
	return nil, fmt.Errorf("network %s: path %s has no host link", n.Key(), n.Path)
}

func (p *Path) vxlanSpec(n *api.Network, name string) (*netlink.Vxlan, error) {
	v := n.VXLAN
	vx := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: name}, VxlanId: v.VNI, Port: v.Port, Learning: true}
	if vx.Port == 0 {
		vx.Port = vxlanDefaultPort
	}
	overhead := 50 // outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8
	peer := v.Group
	if peer == "" {
		peer = v.Remote
	}
	if peer != "" {
		a := netip.MustParseAddr(peer)
		vx.Group = a.AsSlice()
		if a.Is6() {
			overhead = 70
		}
	}
	underlayMTU := 1500
	if v.Device != "" {
		dev, err := hostLink(p.host, v.Device, n.Key())
		if err != nil {
			return nil, err
		}
		vx.VtepDevIndex = dev.Attrs().Index
		underlayMTU = dev.Attrs().MTU
	}
	vx.MTU = underlayMTU - overhead
	if n.MTU != 0 {
		if n.MTU > vx.MTU {
			return nil, attach.Errorf(attach.CodeInvalidConfig, "network %s: mtu %d exceeds what the underlay carries (%d - %d bytes of VXLAN overhead = %d)",
				n.Key(), n.MTU, underlayMTU, overhead, vx.MTU)
		}
		vx.MTU = n.MTU
	}
	return vx, nil
}

// sameHostLink checks that an existing host link is what the network needs.
func sameHostLink(have, want netlink.Link) error {
	switch w := want.(type) {
	case *netlink.Vlan:
		h, ok := have.(*netlink.Vlan)
		if !ok {
			return fmt.Errorf("is a %s, not a vlan", have.Type())
		}
		if h.VlanId != w.VlanId || h.Attrs().ParentIndex != w.ParentIndex {
			return fmt.Errorf("has vlan %d on ifindex %d, want vlan %d on ifindex %d", h.VlanId, h.Attrs().ParentIndex, w.VlanId, w.ParentIndex)
		}
	case *netlink.Vxlan:
		h, ok := have.(*netlink.Vxlan)
		if !ok {
			return fmt.Errorf("is a %s, not a vxlan", have.Type())
		}
		if h.VxlanId != w.VxlanId || h.Port != w.Port || !h.Group.Equal(w.Group) || h.VtepDevIndex != w.VtepDevIndex {
			return fmt.Errorf("has vni %d port %d peer %s dev %d, want vni %d port %d peer %s dev %d",
				h.VxlanId, h.Port, h.Group, h.VtepDevIndex, w.VxlanId, w.Port, w.Group, w.VtepDevIndex)
		}
	}
	return nil
}

// createDirect creates the network's VLAN or VXLAN link itself inside the
// pod (mode "direct"): the pod owns the tagged or encapsulating device.
func (p *Path) createDirect(req *attach.Request, target netns.NsHandle, h *netlink.Handle) (netlink.Link, error) {
	n := req.Network
	spec, err := p.hostLinkSpec(n, tempName(req.ContainerID, req.IfName))
	if err != nil {
		return nil, err
	}
	spec.Attrs().Namespace = netlink.NsFd(int(target))
	if n.MTU != 0 {
		spec.Attrs().MTU = n.MTU
	}
	if err := p.host.LinkAdd(spec); err != nil {
		if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.EBUSY) {
			return nil, attach.Errorf(attach.CodeInvalidConfig, "network %s: its %s is already in use by another interface on this node (mode direct gives one pod per VLAN or VNI per master): %v",
				n.Key(), spec.Type(), err)
		}
		return nil, fmt.Errorf("network %s: create %s in the pod: %w", n.Key(), spec.Type(), err)
	}
	l, err := h.LinkByName(spec.Attrs().Name)
	if err != nil {
		return nil, fmt.Errorf("network %s: find new %s: %w", n.Key(), spec.Type(), err)
	}
	return l, nil
}

// SyncHostLinks makes the node's host links match the networks that need
// them: want is called with the host-link lock held and returns every
// network whose host link must exist (the defined networks and those that
// attached pods still use). Missing links are created; links telcni made
// that no network wants are removed. Holding the lock across want and the
// removals means an ADD cannot slip a new user in between.
func (p *Path) SyncHostLinks(ctx context.Context, want func() ([]*api.Network, error)) error {
	p.hostMu.Lock()
	defer p.hostMu.Unlock()
	nets, err := want()
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	var errs []error
	for _, n := range nets {
		if !usesHostLink(n) {
			continue
		}
		keep[HostLinkName(n)] = true
		if _, err := p.ensureHostLink(n); err != nil {
			errs = append(errs, err)
		}
	}
	links, err := p.host.LinkList()
	if err != nil {
		return fmt.Errorf("list host links: %w", err)
	}
	for _, l := range links {
		if l.Attrs().Alias != HostAlias || keep[l.Attrs().Name] {
			continue
		}
		if err := p.host.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("remove host link %s: %w", l.Attrs().Name, err))
			continue
		}
		p.log.Info("host link removed", "link", l.Attrs().Name)
	}
	return errors.Join(errs...)
}
