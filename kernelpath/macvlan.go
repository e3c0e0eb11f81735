package kernelpath

import (
	"fmt"
	"hash/fnv"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/telcni/telcni/attach"
)

var macvlanModes = map[string]netlink.MacvlanMode{
	"bridge":   netlink.MACVLAN_MODE_BRIDGE,
	"private":  netlink.MACVLAN_MODE_PRIVATE,
	"vepa":     netlink.MACVLAN_MODE_VEPA,
	"passthru": netlink.MACVLAN_MODE_PASSTHRU,
}

// createMacvlan creates the macvlan directly inside the pod's netns (the
// kernel accepts the target netns at creation), under a temporary name so
// that it cannot collide with the pod's other interfaces while it is set up.
func createMacvlan(host *netlink.Handle, req *attach.Request, target netns.NsHandle, h *netlink.Handle) (netlink.Link, error) {
	n := req.Network
	master, err := hostMaster(host, n.Master, n.Key())
	if err != nil {
		return nil, err
	}
	if n.MTU > master.Attrs().MTU {
		return nil, attach.Errorf(attach.CodeInvalidConfig, "network %s: mtu %d exceeds master %s mtu %d", n.Key(), n.MTU, n.Master, master.Attrs().MTU)
	}
	mv := &netlink.Macvlan{
		LinkAttrs: netlink.LinkAttrs{
			Name:        tempName(req.ContainerID, req.IfName),
			ParentIndex: master.Attrs().Index,
			MTU:         n.MTU,
			Namespace:   netlink.NsFd(int(target)),
		},
		Mode: macvlanModes[n.EffectiveMode()],
	}
	if err := host.LinkAdd(mv); err != nil {
		return nil, fmt.Errorf("network %s: create macvlan on %s: %w", n.Key(), n.Master, err)
	}
	link, err := h.LinkByName(mv.Name)
	if err != nil {
		return nil, fmt.Errorf("network %s: find new macvlan %s: %w", n.Key(), mv.Name, err)
	}
	return link, nil
}

func hostMaster(host *netlink.Handle, name, network string) (netlink.Link, error) {
	master, err := host.LinkByName(name)
	if err != nil {
		return nil, attach.Errorf(attach.CodeInvalidConfig, "network %s: master %q not found on this node: %v", network, name, err)
	}
	return master, nil
}

// tempName is a per-(container, ifname) name that fits IFNAMSIZ.
func tempName(containerID, ifName string) string {
	h := fnv.New32a()
	h.Write([]byte(containerID + "/" + ifName))
	return fmt.Sprintf("tc%08x", h.Sum32())
}
