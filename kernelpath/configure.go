package kernelpath

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/telcni/telcni/attach"
)

// rulePriority is where telcni's policy-routing rules sit: before the
// main table (32766), after the local table (0).
const rulePriority = 1000

// ConfigureLink turns a link already in the pod's netns (h works there),
// under a temporary name, into the pod interface: name, ownership alias,
// MAC, addresses, up, routes. Paths that move an existing device into the
// pod (sriov) use it too.
func ConfigureLink(h *netlink.Handle, link netlink.Link, req *attach.Request) (*attach.Interface, error) {
	// The alias first: an agent killed between the two steps leaves a link
	// that is either still under its temporary name (telcni's by
	// construction) or already marked as telcni's, never an unmarked link
	// under the pod's interface name that DEL would have to leave alone.
	if err := h.LinkSetAlias(link, Alias(req.ContainerID, req.IfName)); err != nil {
		return nil, fmt.Errorf("set alias on %s: %w", link.Attrs().Name, err)
	}
	if err := h.LinkSetName(link, req.IfName); err != nil {
		return nil, fmt.Errorf("rename %s to %s: %w", link.Attrs().Name, req.IfName, err)
	}
	if req.MAC != "" {
		hw, err := net.ParseMAC(req.MAC)
		if err != nil {
			return nil, attach.Errorf(attach.CodeInvalidConfig, "mac %q: %v", req.MAC, err)
		}
		if err := h.LinkSetHardwareAddr(link, hw); err != nil {
			return nil, fmt.Errorf("set mac %s on %s: %w", req.MAC, req.IfName, err)
		}
	}
	for _, ip := range req.IPs {
		addr := &netlink.Addr{IPNet: ipNet(ip.Address)}
		if ip.Address.Addr().Is6() {
			// A static address must be usable the moment ADD returns;
			// duplicate detection is IPAM's job, not DAD's.
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(link, addr); err != nil {
			return nil, fmt.Errorf("add address %s to %s: %w", ip.Address, req.IfName, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("set %s up: %w", req.IfName, err)
	}
	for _, r := range wantRoutes(link.Attrs().Index, req) {
		if err := h.RouteAdd(r); err != nil {
			return nil, fmt.Errorf("add route %s via %s dev %s table %d: %w", r.Dst, r.Gw, req.IfName, r.Table, err)
		}
	}
	for _, rule := range wantRules(req) {
		if err := h.RuleAdd(rule); err != nil {
			return nil, fmt.Errorf("add rule from %s lookup %d: %w", rule.Src, rule.Table, err)
		}
	}
	fresh, err := h.LinkByIndex(link.Attrs().Index)
	if err != nil {
		return nil, fmt.Errorf("read back %s: %w", req.IfName, err)
	}
	return &attach.Interface{Name: req.IfName, MAC: fresh.Attrs().HardwareAddr.String(), MTU: fresh.Attrs().MTU}, nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func defaultDst(is4 bool) *net.IPNet {
	if is4 {
		return &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	}
	return &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
}

// wantRoutes lists the routes the request implies: the network's routes and
// the default route in the main table; and, with a policy-routing table, the
// interface's subnets and default route again in that table.
func wantRoutes(index int, req *attach.Request) []*netlink.Route {
	var out []*netlink.Route
	for _, r := range req.Routes {
		out = append(out, route(index, r.Dst, r.GW, 0))
	}
	if req.DefaultRoute {
		for _, gw := range req.Gateways() {
			out = append(out, route(index, netip.PrefixFrom(netip.IPv6Unspecified(), 0), gw, 0))
		}
	}
	if t := req.Network.PolicyRoutingTable; t != 0 {
		for _, ip := range req.IPs {
			sub := &netlink.Route{LinkIndex: index, Dst: ipNet(ip.Address.Masked()), Src: ip.Address.Addr().AsSlice(),
				Scope: netlink.SCOPE_LINK, Table: t}
			out = append(out, sub)
			if ip.Gateway.IsValid() {
				out = append(out, route(index, netip.Prefix{}, ip.Gateway, t))
			}
		}
	}
	return out
}

// route builds a route; an invalid or zero-length dst means the default
// route of gw's family.
func route(index int, dst netip.Prefix, gw netip.Addr, table int) *netlink.Route {
	r := &netlink.Route{LinkIndex: index, Table: table}
	if dst.IsValid() && dst.Bits() > 0 {
		r.Dst = ipNet(dst)
	} else if gw.IsValid() {
		r.Dst = defaultDst(gw.Is4())
	} else {
		r.Dst = defaultDst(dst.Addr().Is4())
	}
	if gw.IsValid() {
		r.Gw = gw.AsSlice()
	} else {
		r.Scope = netlink.SCOPE_LINK
	}
	return r
}

func wantRules(req *attach.Request) []*netlink.Rule {
	t := req.Network.PolicyRoutingTable
	if t == 0 {
		return nil
	}
	var out []*netlink.Rule
	for _, ip := range req.IPs {
		r := netlink.NewRule()
		r.Src = ipNet(netip.PrefixFrom(ip.Address.Addr(), ip.Address.Addr().BitLen()))
		r.Table = t
		r.Priority = rulePriority
		if ip.Address.Addr().Is6() {
			r.Family = unix.AF_INET6
		} else {
			r.Family = unix.AF_INET
		}
		out = append(out, r)
	}
	return out
}

// DeletePolicyRules removes the policy-routing rules ConfigureLink added
// for the record (rules live in the netns, not on the link).
func DeletePolicyRules(h *netlink.Handle, rec *attach.Record) error {
	for _, rule := range wantRules(&rec.Request) {
		if err := h.RuleDel(rule); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("delete rule from %s lookup %d: %w", rule.Src, rule.Table, err)
		}
	}
	return nil
}
