package kernelpath

import (
	"context"
	"fmt"
	"net"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/telcni/telcni/attach"
)

// Check verifies that the interface of a record still exists, is telcni's,
// and has the recorded MAC, addresses and routes.
func (p *Path) Check(ctx context.Context, rec *attach.Record) error {
	target, h, done, err := PodNetns(rec.Netns)
	if err != nil {
		return attach.WithCode(attach.CodeCheckFailed, err)
	}
	defer done()
	link, err := h.LinkByName(rec.IfName)
	if err != nil {
		return attach.Errorf(attach.CodeCheckFailed, "%s in %s: link not found: %v", rec.IfName, rec.Netns, err)
	}
	return CheckLink(h, target, link, rec)
}

// CheckLink compares a pod interface (link, in the netns target that h
// works in) with its record: telcni's alias, MAC, up, addresses, routes and
// firewall. Paths that move an existing device into the pod (sriov) use it.
func CheckLink(h *netlink.Handle, target netns.NsHandle, link netlink.Link, rec *attach.Record) error {
	fail := func(format string, args ...any) error {
		return attach.Errorf(attach.CodeCheckFailed, "%s in %s: "+format, append([]any{rec.IfName, rec.Netns}, args...)...)
	}
	a := link.Attrs()
	if a.Alias != Alias(rec.ContainerID, rec.IfName) {
		return fail("alias is %q, not telcni's", a.Alias)
	}
	if rec.Interface.MAC != "" && a.HardwareAddr.String() != rec.Interface.MAC {
		return fail("mac is %s, recorded %s", a.HardwareAddr, rec.Interface.MAC)
	}
	if a.Flags&net.FlagUp == 0 {
		return fail("link is down")
	}
	addrs, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", rec.IfName, err)
	}
	for _, ip := range rec.IPs {
		if !slices.ContainsFunc(addrs, func(a netlink.Addr) bool { return a.IPNet.String() == ip.Address.String() }) {
			return fail("address %s missing", ip.Address)
		}
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: a.Index, Table: allTables},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("list routes of %s: %w", rec.IfName, err)
	}
	for _, want := range wantRoutes(a.Index, &rec.Request) {
		if !slices.ContainsFunc(routes, func(r netlink.Route) bool { return sameRoute(r, *want) }) {
			return fail("route %s via %s table %d missing", want.Dst, want.Gw, want.Table)
		}
	}
	return checkFirewall(target, rec)
}

// allTables (RT_TABLE_UNSPEC) with RT_FILTER_TABLE lists routes of every table.
const allTables = 0

func sameRoute(have, want netlink.Route) bool {
	table := want.Table
	if table == 0 {
		table = 254 // main
	}
	return have.Table == table && have.Dst.String() == want.Dst.String() && have.Gw.Equal(want.Gw)
}
