package vppagent

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"go.fd.io/govpp/binapi/arp"
	"go.fd.io/govpp/binapi/fib_types"
	interfaces "go.fd.io/govpp/binapi/interface"
	"go.fd.io/govpp/binapi/interface_types"
	"go.fd.io/govpp/binapi/ip"
	"go.fd.io/govpp/binapi/ip6_nd"
	"go.fd.io/govpp/binapi/ip_types"
)

func (v *vpp) createLoopback(ctx context.Context) (uint32, error) {
	c := interfaces.NewServiceClient(v.conn)
	r, err := c.CreateLoopback(ctx, &interfaces.CreateLoopback{})
	if err != nil {
		return 0, fmt.Errorf("create loopback: %w", err)
	}
	return uint32(r.SwIfIndex), nil
}

func (v *vpp) deleteLoopback(ctx context.Context, idx uint32) error {
	c := interfaces.NewServiceClient(v.conn)
	if _, err := c.DeleteLoopback(ctx, &interfaces.DeleteLoopback{SwIfIndex: interface_types.InterfaceIndex(idx)}); err != nil {
		return fmt.Errorf("delete loopback %d: %w", idx, err)
	}
	return nil
}

func (v *vpp) ensureTable(ctx context.Context, table uint32) error {
	if table == 0 {
		return nil
	}
	c := ip.NewServiceClient(v.conn)
	for _, v6 := range []bool{false, true} {
		if _, err := c.IPTableAddDel(ctx, &ip.IPTableAddDel{IsAdd: true, Table: ip.IPTable{TableID: table, IsIP6: v6, Name: fmt.Sprintf("telcni-%d", table)}}); err != nil {
			return fmt.Errorf("add ip table %d (ip6=%v): %w", table, v6, err)
		}
	}
	return nil
}

// setTable puts the interface in table for IPv4 and IPv6. VPP refuses to
// move an interface that has addresses (an unnumbered one borrows them),
// so an interface already in the table is left alone.
func (v *vpp) setTable(ctx context.Context, idx, table uint32) error {
	c := interfaces.NewServiceClient(v.conn)
	for _, v6 := range []bool{false, true} {
		r, err := c.SwInterfaceGetTable(ctx, &interfaces.SwInterfaceGetTable{SwIfIndex: interface_types.InterfaceIndex(idx), IsIPv6: v6})
		if err != nil {
			return fmt.Errorf("table of interface %d (ip6=%v): %w", idx, v6, err)
		}
		if r.VrfID == table {
			continue
		}
		if _, err := c.SwInterfaceSetTable(ctx, &interfaces.SwInterfaceSetTable{SwIfIndex: interface_types.InterfaceIndex(idx), IsIPv6: v6, VrfID: table}); err != nil {
			return fmt.Errorf("put interface %d in table %d (ip6=%v): %w", idx, table, v6, err)
		}
	}
	return nil
}

// hasAddress reports whether the interface already has address p; VPP
// refuses to add it twice with the same retval as a conflict with another
// interface, so idempotent callers look first.
func (v *vpp) hasAddress(ctx context.Context, idx uint32, p netip.Prefix) (bool, error) {
	c := ip.NewServiceClient(v.conn)
	s, err := c.IPAddressDump(ctx, &ip.IPAddressDump{SwIfIndex: interface_types.InterfaceIndex(idx), IsIPv6: p.Addr().Is6()})
	if err != nil {
		return false, fmt.Errorf("dump addresses of %d: %w", idx, err)
	}
	found := false
	err = drain(s.Recv, func(d *ip.IPAddressDetails) { found = found || ip_types.Prefix(d.Prefix) == toPrefix(p) })
	if err != nil {
		return false, fmt.Errorf("dump addresses of %d: %w", idx, err)
	}
	return found, nil
}

func (v *vpp) addAddress(ctx context.Context, idx uint32, p netip.Prefix) error {
	if ok, err := v.hasAddress(ctx, idx, p); err != nil || ok {
		return err
	}
	c := interfaces.NewServiceClient(v.conn)
	_, err := c.SwInterfaceAddDelAddress(ctx, &interfaces.SwInterfaceAddDelAddress{SwIfIndex: interface_types.InterfaceIndex(idx), IsAdd: true, Prefix: ip_types.AddressWithPrefix(toPrefix(p))})
	if err != nil && !isAlreadyExists(err) {
		return fmt.Errorf("add address %s to %d: %w", p, idx, err)
	}
	return nil
}

func (v *vpp) setUnnumbered(ctx context.Context, idx, to uint32, add bool) error {
	c := interfaces.NewServiceClient(v.conn)
	if _, err := c.SwInterfaceSetUnnumbered(ctx, &interfaces.SwInterfaceSetUnnumbered{SwIfIndex: interface_types.InterfaceIndex(to), UnnumberedSwIfIndex: interface_types.InterfaceIndex(idx), IsAdd: add}); err != nil {
		return fmt.Errorf("set %d unnumbered to %d (add=%v): %w", idx, to, add, err)
	}
	return nil
}

// route adds or removes addr/32 (/128) via the pod's interface.
func (v *vpp) route(ctx context.Context, table, idx uint32, addr netip.Addr, add bool) error {
	proto := fib_types.FIB_API_PATH_NH_PROTO_IP4
	if addr.Is6() {
		proto = fib_types.FIB_API_PATH_NH_PROTO_IP6
	}
	c := ip.NewServiceClient(v.conn)
	_, err := c.IPRouteAddDel(ctx, &ip.IPRouteAddDel{IsAdd: add, Route: ip.IPRoute{
		TableID: table,
		Prefix:  toPrefix(netip.PrefixFrom(addr, addr.BitLen())),
		NPaths:  1,
		Paths: []fib_types.FibPath{{SwIfIndex: idx, Proto: proto, Weight: 1,
			Nh: fib_types.FibPathNh{Address: toAddress(addr).Un}}},
	}})
	if err != nil && !(add && isAlreadyExists(err)) {
		return fmt.Errorf("route %s via %d (add=%v): %w", addr, idx, add, err)
	}
	return nil
}

// proxyGateway makes VPP answer ARP (IPv4) or ND (IPv6) for the gateway on
// the pod's interface.
func (v *vpp) proxyGateway(ctx context.Context, table, idx uint32, gw netip.Addr, add bool) error {
	if gw.Is6() {
		c := ip6_nd.NewServiceClient(v.conn)
		_, err := c.IP6ndProxyAddDel(ctx, &ip6_nd.IP6ndProxyAddDel{SwIfIndex: interface_types.InterfaceIndex(idx), IsAdd: add, IP: ip_types.IP6Address(gw.As16())})
		if err != nil && !(add && isAlreadyExists(err)) {
			return fmt.Errorf("nd proxy %s on %d (add=%v): %w", gw, idx, add, err)
		}
		return nil
	}
	c := arp.NewServiceClient(v.conn)
	if add {
		_, err := c.ProxyArpAddDel(ctx, &arp.ProxyArpAddDel{IsAdd: true, Proxy: arp.ProxyArp{TableID: table, Low: ip_types.IP4Address(gw.As4()), Hi: ip_types.IP4Address(gw.As4())}})
		if err != nil && !isAlreadyExists(err) {
			return fmt.Errorf("proxy arp range %s: %w", gw, err)
		}
	}
	if _, err := c.ProxyArpIntfcEnableDisable(ctx, &arp.ProxyArpIntfcEnableDisable{SwIfIndex: interface_types.InterfaceIndex(idx), Enable: add}); err != nil {
		return fmt.Errorf("proxy arp on %d (enable=%v): %w", idx, add, err)
	}
	return nil
}

// dropProxyArpFor removes the proxy ARP ranges made for the addresses of
// an L3 network's loopback (its gateways) before the loopback goes, so
// that a removed network leaves nothing behind.
func (v *vpp) dropProxyArpFor(ctx context.Context, loop uint32) error {
	c := ip.NewServiceClient(v.conn)
	s, err := c.IPAddressDump(ctx, &ip.IPAddressDump{SwIfIndex: interface_types.InterfaceIndex(loop)})
	if err != nil {
		return fmt.Errorf("dump addresses of %d: %w", loop, err)
	}
	gws := map[ip_types.IP4Address]bool{}
	err = drain(s.Recv, func(d *ip.IPAddressDetails) {
		if d.Prefix.Address.Af == ip_types.ADDRESS_IP4 {
			gws[d.Prefix.Address.Un.GetIP4()] = true
		}
	})
	if err != nil {
		return fmt.Errorf("dump addresses of %d: %w", loop, err)
	}
	if len(gws) == 0 {
		return nil
	}
	a := arp.NewServiceClient(v.conn)
	ps, err := a.ProxyArpDump(ctx, &arp.ProxyArpDump{})
	if err != nil {
		return fmt.Errorf("dump proxy arp: %w", err)
	}
	var drop []arp.ProxyArp
	err = drain(ps.Recv, func(d *arp.ProxyArpDetails) {
		if d.Proxy.Low == d.Proxy.Hi && gws[d.Proxy.Low] {
			drop = append(drop, d.Proxy)
		}
	})
	if err != nil {
		return fmt.Errorf("dump proxy arp: %w", err)
	}
	for _, p := range drop {
		if _, err := a.ProxyArpAddDel(ctx, &arp.ProxyArpAddDel{IsAdd: false, Proxy: p}); err != nil {
			return fmt.Errorf("delete proxy arp %s: %w", p.Low, err)
		}
	}
	return nil
}

func toAddress(a netip.Addr) ip_types.Address {
	return ip_types.NewAddress(net.IP(a.AsSlice()))
}

func toPrefix(p netip.Prefix) ip_types.Prefix {
	return ip_types.Prefix{Address: toAddress(p.Addr()), Len: uint8(p.Bits())}
}

// ip6Enable turns IPv6 on for an interface: a link-local address and the
// all-nodes and solicited-node multicast groups, without which VPP drops
// the pod's neighbour solicitations (multicast RPF) on an unnumbered
// interface.
func (v *vpp) ip6Enable(ctx context.Context, idx uint32) error {
	c := ip.NewServiceClient(v.conn)
	_, err := c.SwInterfaceIP6EnableDisable(ctx, &ip.SwInterfaceIP6EnableDisable{SwIfIndex: interface_types.InterfaceIndex(idx), Enable: true})
	if err != nil && !isAlreadyExists(err) {
		return fmt.Errorf("enable ip6 on %d: %w", idx, err)
	}
	return nil
}
