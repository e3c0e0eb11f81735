package kernelpath

import (
	"errors"
	"fmt"
	"hash/fnv"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
)

var macvlanModes = map[string]netlink.MacvlanMode{
	"bridge":   netlink.MACVLAN_MODE_BRIDGE,
	"private":  netlink.MACVLAN_MODE_PRIVATE,
	"vepa":     netlink.MACVLAN_MODE_VEPA,
	"passthru": netlink.MACVLAN_MODE_PASSTHRU,
}

var ipvlanModes = map[string]netlink.IPVlanMode{
	"l2":  netlink.IPVLAN_MODE_L2,
	"l3":  netlink.IPVLAN_MODE_L3,
	"l3s": netlink.IPVLAN_MODE_L3S,
}

// lowerKind says which link type a pod interface on a shared parent is.
type lowerKind struct {
	macvlan bool
	mode    string // macvlan or ipvlan mode
}

// lowerOf maps a network to the kind of pod link it gets on its parent:
// macvlan and ipvlan networks directly; vlan and vxlan networks by their
// mode (macvlan bridge or ipvlan l2 on the shared host link).
func lowerOf(n *api.Network) lowerKind {
	switch n.Path {
	case api.PathMACVLAN:
		return lowerKind{macvlan: true, mode: n.EffectiveMode()}
	case api.PathIPVLAN:
		return lowerKind{mode: n.EffectiveMode()}
	}
	if n.EffectiveMode() == "ipvlan" {
		return lowerKind{mode: "l2"}
	}
	return lowerKind{macvlan: true, mode: "bridge"}
}

// createLower creates a macvlan or ipvlan on the host link parent directly
// inside the pod's netns (the kernel accepts the target netns at
// creation), under a temporary name so that it cannot collide with the
// pod's other interfaces while it is set up.
func createLower(host *netlink.Handle, req *attach.Request, parent string, kind lowerKind, target netns.NsHandle, h *netlink.Handle) (netlink.Link, error) {
	n := req.Network
	master, err := hostLink(host, parent, n.Key())
	if err != nil {
		return nil, err
	}
	if err := checkMTU(n, master); err != nil {
		return nil, err
	}
	attrs := netlink.LinkAttrs{
		Name:        tempName(req.ContainerID, req.IfName),
		ParentIndex: master.Attrs().Index,
		MTU:         n.MTU,
		Namespace:   netlink.NsFd(int(target)),
	}
	var link netlink.Link
	if kind.macvlan {
		link = &netlink.Macvlan{LinkAttrs: attrs, Mode: macvlanModes[kind.mode]}
	} else {
		if req.MAC != "" {
			return nil, attach.Errorf(attach.CodeInvalidConfig, "network %s: mac %q cannot be set: ipvlan interfaces share the MAC of %s", n.Key(), req.MAC, parent)
		}
		link = &netlink.IPVlan{LinkAttrs: attrs, Mode: ipvlanModes[kind.mode]}
	}
	if err := host.LinkAdd(link); err != nil {
		if errors.Is(err, unix.EBUSY) {
			// The kernel gives a device to either macvlan or ipvlan.
			return nil, attach.Errorf(attach.CodeInvalidConfig, "network %s: cannot create %s on %s: it already carries interfaces of the other kind (macvlan and ipvlan cannot share a master): %v",
				n.Key(), link.Type(), parent, err)
		}
		return nil, fmt.Errorf("network %s: create %s on %s: %w", n.Key(), link.Type(), parent, err)
	}
	created, err := h.LinkByName(attrs.Name)
	if err != nil {
		return nil, fmt.Errorf("network %s: find new %s %s: %w", n.Key(), link.Type(), attrs.Name, err)
	}
	return created, nil
}

func hostLink(host *netlink.Handle, name, network string) (netlink.Link, error) {
	l, err := host.LinkByName(name)
	if err != nil {
		return nil, attach.Errorf(attach.CodeInvalidConfig, "network %s: master %q not found on this node: %v", network, name, err)
	}
	return l, nil
}

func checkMTU(n *api.Network, master netlink.Link) error {
	if n.MTU > master.Attrs().MTU {
		return attach.Errorf(attach.CodeInvalidConfig, "network %s: mtu %d exceeds %s's mtu %d", n.Key(), n.MTU, master.Attrs().Name, master.Attrs().MTU)
	}
	return nil
}

// tempName is a per-(container, ifname) name that fits IFNAMSIZ.
func tempName(containerID, ifName string) string {
	h := fnv.New32a()
	h.Write([]byte(containerID + "/" + ifName))
	return fmt.Sprintf("tc%08x", h.Sum32())
}
