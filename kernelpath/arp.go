package kernelpath

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// A pod with several interfaces on one L2 segment (two networks on one
// NIC, the usual telco case) suffers ARP flux by Linux's defaults: every
// interface answers ARP for every address of the pod, so peers learn the
// wrong MAC and replies arrive on the wrong interface. telcni's pod
// interfaces answer only for their own addresses (arp_ignore 1) and
// announce from the address of the interface they send on (arp_announce
// 2), set per device over netlink (IFLA_INET_CONF), no /proc needed.

// Indexes of struct ipv4_devconf (include/uapi/linux/ip.h).
const (
	devconfARPAnnounce = 18
	devconfARPIgnore   = 19
)

// SetARPStrict sets arp_ignore=1 and arp_announce=2 on link, in the netns
// target.
func SetARPStrict(target netns.NsHandle, link netlink.Link) error {
	req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(link.Attrs().Index)
	req.AddData(msg)
	spec := nl.NewRtAttr(unix.IFLA_AF_SPEC, nil)
	inet := spec.AddRtAttr(unix.AF_INET, nil)
	conf := inet.AddRtAttr(unix.IFLA_INET_CONF, nil)
	conf.AddRtAttr(devconfARPIgnore, nl.Uint32Attr(1))
	conf.AddRtAttr(devconfARPAnnounce, nl.Uint32Attr(2))
	req.AddData(spec)
	if err := execAt(target, req); err != nil {
		return fmt.Errorf("arp_ignore/arp_announce on %s: %w", link.Attrs().Name, err)
	}
	return nil
}
