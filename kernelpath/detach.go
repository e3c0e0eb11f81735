package kernelpath

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/telcni/telcni/attach"
)

var _ attach.BatchDetacher = (*Path)(nil)

// Removing a network device costs the kernel an RCU grace period (about
// 20 ms here) whatever its kind, and one RTM_DELLINK per device pays it once
// per device. A pod's links are instead put into one link group and removed
// with a single RTM_DELLINK for the group: the kernel unregisters them
// together, paying the grace period once (three macvlans: 22 ms instead of
// 60 ms). DEL does not wait for even that one: it returns at the kernel's
// announcement of the deletion (unregister.go).

// tombstoneGroups is the range of link groups DetachAll uses; a group is
// taken at random for one call, so concurrent calls for the same netns
// never share one.
const tombstoneGroups = 0x7e000000

// DetachAll removes every record's link, records sharing a netns in one
// kernel batch (see above), after their policy rules and firewall chains.
// Like Detach, a gone netns or link is not an error and a link that is not
// telcni's is left in place.
func (p *Path) DetachAll(ctx context.Context, recs []*attach.Record) error {
	byNetns := map[string][]*attach.Record{}
	var order []string
	for _, r := range recs {
		if _, ok := byNetns[r.Netns]; !ok {
			order = append(order, r.Netns)
		}
		byNetns[r.Netns] = append(byNetns[r.Netns], r)
	}
	var errs []error
	for _, ns := range order {
		if err := p.detachNetns(ctx, ns, byNetns[ns]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (p *Path) detachNetns(ctx context.Context, path string, recs []*attach.Record) error {
	if len(recs) == 1 {
		return p.Detach(ctx, recs[0])
	}
	target, h, done, err := PodNetns(path)
	if errors.Is(err, errNetnsGone) {
		return nil
	}
	if err != nil {
		return err
	}
	defer done()
	group := tombstoneGroups | rand.Uint32N(1<<24)
	var errs []error
	var grouped []int
	for _, rec := range recs {
		if err := DeletePolicyRules(h, rec); err != nil {
			errs = append(errs, err)
		}
		if err := RemoveFirewall(target, rec); err != nil {
			errs = append(errs, err)
		}
		link, err := podLink(h, rec)
		switch {
		case err != nil:
			errs = append(errs, err)
			continue
		case link == nil:
			continue
		case link.Attrs().Alias != Alias(rec.ContainerID, rec.IfName) && link.Attrs().Name != tempName(rec.ContainerID, rec.IfName):
			p.log.Warn("detach: link is not telcni's, left in place", "netns", path, "ifname", rec.IfName, "alias", link.Attrs().Alias)
			continue
		}
		if err := h.LinkSetGroup(link, int(group)); err != nil {
			// Removed alone then, at the usual price.
			if err := h.LinkDel(link); err != nil {
				errs = append(errs, fmt.Errorf("delete %s in %s: %w", rec.IfName, path, err))
			}
			continue
		}
		grouped = append(grouped, link.Attrs().Index)
	}
	if len(grouped) > 0 {
		if err := p.deleteGroup(target, group, grouped); err != nil {
			errs = append(errs, fmt.Errorf("delete the pod's links in %s: %w", path, err))
		}
	}
	return errors.Join(errs...)
}

// deleteGroup removes every link of group (indexes) in the netns target
// with one RTM_DELLINK (ifindex 0, IFLA_GROUP), as `ip link delete group
// N` does, returning at the kernel's announcement (see unregister).
func (p *Path) deleteGroup(target netns.NsHandle, group uint32, indexes []int) error {
	req := nl.NewNetlinkRequest(unix.RTM_DELLINK, unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(group)))
	return p.unregister(target, req, indexes)
}

// execAt sends req, a route-netlink request vishvananda/netlink has no call
// for, in the netns target and waits for its acknowledgement.
func execAt(target netns.NsHandle, req *nl.NetlinkRequest) error {
	sock, err := nl.GetNetlinkSocketAt(target, netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer sock.Close()
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: sock}}
	_, err = req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}
