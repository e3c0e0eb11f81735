package vppagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"

	"go.fd.io/govpp/api"
	afpacket "go.fd.io/govpp/binapi/af_packet"
	afxdp "go.fd.io/govpp/binapi/af_xdp"
	"go.fd.io/govpp/binapi/arp"
	"go.fd.io/govpp/binapi/avf"
	"go.fd.io/govpp/binapi/fib_types"
	interfaces "go.fd.io/govpp/binapi/interface"
	"go.fd.io/govpp/binapi/interface_types"
	"go.fd.io/govpp/binapi/ip"
	"go.fd.io/govpp/binapi/ip6_nd"
	"go.fd.io/govpp/binapi/ip_types"
	"go.fd.io/govpp/binapi/l2"
	"go.fd.io/govpp/binapi/memif"
	"go.fd.io/govpp/binapi/vhost_user"
	"go.fd.io/govpp/binapi/vlib"
)

// vpp wraps one API connection with the typed calls the agent makes.
// Every call checks VPP's retval (the generated RPC clients do) and wraps
// errors with what was being done.
type vpp struct {
	conn api.Connection
}

const invalidIndex = ^uint32(0)

// swIf is the part of an interface dump the agent reasons about.
type swIf struct {
	Index  uint32
	Name   string
	Tag    string
	DevTyp string
	Sup    uint32
	SubID  uint32
	Flags  interface_types.IfStatusFlags
}

func (v *vpp) dumpInterfaces(ctx context.Context) ([]swIf, error) {
	c := interfaces.NewServiceClient(v.conn)
	s, err := c.SwInterfaceDump(ctx, &interfaces.SwInterfaceDump{SwIfIndex: interface_types.InterfaceIndex(invalidIndex)})
	if err != nil {
		return nil, fmt.Errorf("dump interfaces: %w", err)
	}
	var out []swIf
	for {
		d, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("dump interfaces: %w", err)
		}
		out = append(out, swIf{Index: uint32(d.SwIfIndex), Name: d.InterfaceName, Tag: d.Tag,
			DevTyp: d.InterfaceDevType, Sup: d.SupSwIfIndex, SubID: d.SubID, Flags: d.Flags})
	}
}

func (v *vpp) setTag(ctx context.Context, idx uint32, tag string) error {
	c := interfaces.NewServiceClient(v.conn)
	if _, err := c.SwInterfaceTagAddDel(ctx, &interfaces.SwInterfaceTagAddDel{IsAdd: true, SwIfIndex: interface_types.InterfaceIndex(idx), Tag: tag}); err != nil {
		return fmt.Errorf("tag interface %d %q: %w", idx, tag, err)
	}
	return nil
}

func (v *vpp) setUp(ctx context.Context, idx uint32, up bool) error {
	var f interface_types.IfStatusFlags
	if up {
		f = interface_types.IF_STATUS_API_FLAG_ADMIN_UP
	}
	c := interfaces.NewServiceClient(v.conn)
	if _, err := c.SwInterfaceSetFlags(ctx, &interfaces.SwInterfaceSetFlags{SwIfIndex: interface_types.InterfaceIndex(idx), Flags: f}); err != nil {
		return fmt.Errorf("set interface %d admin up=%v: %w", idx, up, err)
	}
	return nil
}

func (v *vpp) setMTU(ctx context.Context, idx uint32, mtu int) error {
	c := interfaces.NewServiceClient(v.conn)
	m := uint32(mtu)
	if _, err := c.SwInterfaceSetMtu(ctx, &interfaces.SwInterfaceSetMtu{SwIfIndex: interface_types.InterfaceIndex(idx), Mtu: []uint32{m, m, m, m}}); err != nil {
		return fmt.Errorf("set interface %d mtu %d: %w", idx, mtu, err)
	}
	return nil
}

// --- memif ---

func (v *vpp) memifSocketAdd(ctx context.Context, filename string) (uint32, error) {
	c := memif.NewServiceClient(v.conn)
	r, err := c.MemifSocketFilenameAddDelV2(ctx, &memif.MemifSocketFilenameAddDelV2{IsAdd: true, SocketID: invalidIndex, SocketFilename: filename})
	if err != nil {
		return 0, fmt.Errorf("add memif socket %q: %w", filename, err)
	}
	return r.SocketID, nil
}

func (v *vpp) memifSocketDel(ctx context.Context, id uint32) error {
	c := memif.NewServiceClient(v.conn)
	if _, err := c.MemifSocketFilenameAddDelV2(ctx, &memif.MemifSocketFilenameAddDelV2{IsAdd: false, SocketID: id}); err != nil {
		return fmt.Errorf("delete memif socket %d: %w", id, err)
	}
	return nil
}

func (v *vpp) memifSockets(ctx context.Context) (map[uint32]string, error) {
	c := memif.NewServiceClient(v.conn)
	s, err := c.MemifSocketFilenameDump(ctx, &memif.MemifSocketFilenameDump{})
	if err != nil {
		return nil, fmt.Errorf("dump memif sockets: %w", err)
	}
	out := map[uint32]string{}
	for {
		d, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("dump memif sockets: %w", err)
		}
		out[d.SocketID] = d.SocketFilename
	}
}

func (v *vpp) memifCreate(ctx context.Context, socketID, id uint32, o MemifOptions) (uint32, error) {
	mode := memif.MEMIF_MODE_API_ETHERNET
	if o.Mode == MemifModeIP {
		mode = memif.MEMIF_MODE_API_IP
	}
	c := memif.NewServiceClient(v.conn)
	r, err := c.MemifCreateV2(ctx, &memif.MemifCreateV2{
		Role: memif.MEMIF_ROLE_API_MASTER, Mode: mode,
		RxQueues: uint8(o.Queues), TxQueues: uint8(o.Queues),
		ID: id, SocketID: socketID, RingSize: uint32(o.RingSize), BufferSize: uint16(o.BufferSize),
	})
	if err != nil {
		return 0, fmt.Errorf("create memif id %d on socket %d: %w", id, socketID, err)
	}
	return uint32(r.SwIfIndex), nil
}

func (v *vpp) memifDelete(ctx context.Context, idx uint32) error {
	c := memif.NewServiceClient(v.conn)
	if _, err := c.MemifDelete(ctx, &memif.MemifDelete{SwIfIndex: interface_types.InterfaceIndex(idx)}); err != nil {
		return fmt.Errorf("delete memif %d: %w", idx, err)
	}
	return nil
}

// --- vhost-user ---

func (v *vpp) vhostCreate(ctx context.Context, path string, server bool, tag string) (uint32, error) {
	c := vhost_user.NewServiceClient(v.conn)
	r, err := c.CreateVhostUserIfV2(ctx, &vhost_user.CreateVhostUserIfV2{IsServer: server, SockFilename: path, Tag: tag})
	if err != nil {
		return 0, fmt.Errorf("create vhost-user %s (server=%v): %w", path, server, err)
	}
	return uint32(r.SwIfIndex), nil
}

func (v *vpp) vhostDelete(ctx context.Context, idx uint32) error {
	c := vhost_user.NewServiceClient(v.conn)
	if _, err := c.DeleteVhostUserIf(ctx, &vhost_user.DeleteVhostUserIf{SwIfIndex: interface_types.InterfaceIndex(idx)}); err != nil {
		return fmt.Errorf("delete vhost-user %d: %w", idx, err)
	}
	return nil
}

// --- L2 ---

func (v *vpp) bridgeDomains(ctx context.Context) (map[uint32]string, error) {
	c := l2.NewServiceClient(v.conn)
	s, err := c.BridgeDomainDump(ctx, &l2.BridgeDomainDump{BdID: invalidIndex, SwIfIndex: interface_types.InterfaceIndex(invalidIndex)})
	if err != nil {
		return nil, fmt.Errorf("dump bridge domains: %w", err)
	}
	out := map[uint32]string{}
	for {
		d, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("dump bridge domains: %w", err)
		}
		out[d.BdID] = d.BdTag
	}
}

// bdMembers lists the interfaces in bridge domain id.
func (v *vpp) bdMembers(ctx context.Context, id uint32) ([]uint32, error) {
	c := l2.NewServiceClient(v.conn)
	s, err := c.BridgeDomainDump(ctx, &l2.BridgeDomainDump{BdID: id, SwIfIndex: interface_types.InterfaceIndex(invalidIndex)})
	if err != nil {
		return nil, fmt.Errorf("dump bridge domain %d: %w", id, err)
	}
	var out []uint32
	for {
		d, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("dump bridge domain %d: %w", id, err)
		}
		for _, m := range d.SwIfDetails {
			out = append(out, uint32(m.SwIfIndex))
		}
	}
}

func (v *vpp) bridgeDomainAdd(ctx context.Context, id uint32, tag string) error {
	c := l2.NewServiceClient(v.conn)
	_, err := c.BridgeDomainAddDelV2(ctx, &l2.BridgeDomainAddDelV2{BdID: id, IsAdd: true, Flood: true, UuFlood: true, Forward: true, Learn: true, BdTag: tag})
	if err != nil {
		return fmt.Errorf("add bridge domain %d %q: %w", id, tag, err)
	}
	return nil
}

func (v *vpp) bridgeDomainDel(ctx context.Context, id uint32) error {
	c := l2.NewServiceClient(v.conn)
	if _, err := c.BridgeDomainAddDelV2(ctx, &l2.BridgeDomainAddDelV2{BdID: id, IsAdd: false}); err != nil {
		return fmt.Errorf("delete bridge domain %d: %w", id, err)
	}
	return nil
}

func (v *vpp) setBridge(ctx context.Context, idx, bd uint32, enable bool) error {
	c := l2.NewServiceClient(v.conn)
	if _, err := c.SwInterfaceSetL2Bridge(ctx, &l2.SwInterfaceSetL2Bridge{RxSwIfIndex: interface_types.InterfaceIndex(idx), BdID: bd, Enable: enable}); err != nil {
		return fmt.Errorf("put interface %d in bridge domain %d (enable=%v): %w", idx, bd, enable, err)
	}
	return nil
}

// vtrPop1 is VPP's L2_VTR_POP_1: strip the dot1q tag on ingress and push it
// back on egress, so that pods in the bridge domain see untagged frames.
const vtrPop1 = 3

func (v *vpp) popTag(ctx context.Context, idx uint32) error {
	c := l2.NewServiceClient(v.conn)
	if _, err := c.L2InterfaceVlanTagRewrite(ctx, &l2.L2InterfaceVlanTagRewrite{SwIfIndex: interface_types.InterfaceIndex(idx), VtrOp: vtrPop1, PushDot1q: 1}); err != nil {
		return fmt.Errorf("set tag rewrite pop 1 on %d: %w", idx, err)
	}
	return nil
}

func (v *vpp) createVLAN(ctx context.Context, parent uint32, vlan int) (uint32, error) {
	c := interfaces.NewServiceClient(v.conn)
	r, err := c.CreateVlanSubif(ctx, &interfaces.CreateVlanSubif{SwIfIndex: interface_types.InterfaceIndex(parent), VlanID: uint32(vlan)})
	if err != nil {
		return 0, fmt.Errorf("create dot1q %d sub-interface on %d: %w", vlan, parent, err)
	}
	return uint32(r.SwIfIndex), nil
}

func (v *vpp) deleteSubif(ctx context.Context, idx uint32) error {
	c := interfaces.NewServiceClient(v.conn)
	if _, err := c.DeleteSubif(ctx, &interfaces.DeleteSubif{SwIfIndex: interface_types.InterfaceIndex(idx)}); err != nil {
		return fmt.Errorf("delete sub-interface %d: %w", idx, err)
	}
	return nil
}

// --- L3 ---

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
	for {
		d, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return found, nil
		}
		if err != nil {
			return false, fmt.Errorf("dump addresses of %d: %w", idx, err)
		}
		if ip_types.Prefix(d.Prefix) == toPrefix(p) {
			found = true
		}
	}
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
	for {
		d, err := s.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("dump addresses of %d: %w", loop, err)
		}
		if d.Prefix.Address.Af == ip_types.ADDRESS_IP4 {
			gws[d.Prefix.Address.Un.GetIP4()] = true
		}
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
	for {
		d, err := ps.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("dump proxy arp: %w", err)
		}
		if d.Proxy.Low == d.Proxy.Hi && gws[d.Proxy.Low] {
			drop = append(drop, d.Proxy)
		}
	}
	for _, p := range drop {
		if _, err := a.ProxyArpAddDel(ctx, &arp.ProxyArpAddDel{IsAdd: false, Proxy: p}); err != nil {
			return fmt.Errorf("delete proxy arp %s: %w", p.Low, err)
		}
	}
	return nil
}

// --- uplinks ---

func (v *vpp) afPacketCreate(ctx context.Context, host string) (uint32, error) {
	c := afpacket.NewServiceClient(v.conn)
	r, err := c.AfPacketCreateV3(ctx, &afpacket.AfPacketCreateV3{Mode: afpacket.AF_PACKET_API_MODE_ETHERNET, HostIfName: host, UseRandomHwAddr: true, NumRxQueues: 1, NumTxQueues: 1})
	if err != nil {
		return 0, fmt.Errorf("create af_packet on host interface %s: %w", host, err)
	}
	return uint32(r.SwIfIndex), nil
}

func (v *vpp) afPacketDelete(ctx context.Context, host string) error {
	c := afpacket.NewServiceClient(v.conn)
	if _, err := c.AfPacketDelete(ctx, &afpacket.AfPacketDelete{HostIfName: host}); err != nil {
		return fmt.Errorf("delete af_packet %s: %w", host, err)
	}
	return nil
}

func (v *vpp) afXDPCreate(ctx context.Context, host, name string) (uint32, error) {
	c := afxdp.NewServiceClient(v.conn)
	r, err := c.AfXdpCreateV3(ctx, &afxdp.AfXdpCreateV3{HostIf: host, Name: name, RxqNum: 1})
	if err != nil {
		return 0, fmt.Errorf("create af_xdp on host interface %s: %w", host, err)
	}
	return uint32(r.SwIfIndex), nil
}

func (v *vpp) afXDPDelete(ctx context.Context, idx uint32) error {
	c := afxdp.NewServiceClient(v.conn)
	if _, err := c.AfXdpDelete(ctx, &afxdp.AfXdpDelete{SwIfIndex: interface_types.InterfaceIndex(idx)}); err != nil {
		return fmt.Errorf("delete af_xdp %d: %w", idx, err)
	}
	return nil
}

func (v *vpp) avfCreate(ctx context.Context, pci string) (uint32, error) {
	addr, err := pciToU32(pci)
	if err != nil {
		return 0, err
	}
	c := avf.NewServiceClient(v.conn)
	r, err := c.AvfCreate(ctx, &avf.AvfCreate{PciAddr: addr, RxqNum: 1})
	if err != nil {
		return 0, fmt.Errorf("create avf on %s: %w", pci, err)
	}
	return uint32(r.SwIfIndex), nil
}

func (v *vpp) avfDelete(ctx context.Context, idx uint32) error {
	c := avf.NewServiceClient(v.conn)
	if _, err := c.AvfDelete(ctx, &avf.AvfDelete{SwIfIndex: interface_types.InterfaceIndex(idx)}); err != nil {
		return fmt.Errorf("delete avf %d: %w", idx, err)
	}
	return nil
}

// cli runs a debug CLI command (telcnictl passthrough, tests).
func (v *vpp) cli(ctx context.Context, cmd string) (string, error) {
	c := vlib.NewServiceClient(v.conn)
	r, err := c.CliInband(ctx, &vlib.CliInband{Cmd: cmd})
	if err != nil {
		return "", fmt.Errorf("vpp cli %q: %w", cmd, err)
	}
	return r.Reply, nil
}

// pciToU32 packs "dddd:bb:ss.f" the way VPP's vlib_pci_addr_t is laid out
// (domain:16 bus:8 slot:5 function:3, little-endian on the wire).
func pciToU32(s string) (uint32, error) {
	var dom, bus, slot, fn uint32
	if _, err := fmt.Sscanf(s, "%x:%x:%x.%x", &dom, &bus, &slot, &fn); err != nil {
		return 0, fmt.Errorf("parse PCI address %q: %w", s, err)
	}
	if dom > 0xffff || bus > 0xff || slot > 0x1f || fn > 7 {
		return 0, fmt.Errorf("PCI address %q out of range", s)
	}
	return dom | bus<<16 | slot<<24 | fn<<29, nil
}

func toAddress(a netip.Addr) ip_types.Address {
	return ip_types.NewAddress(net.IP(a.AsSlice()))
}

func toPrefix(p netip.Prefix) ip_types.Prefix {
	return ip_types.Prefix{Address: toAddress(p.Addr()), Len: uint8(p.Bits())}
}

// isAlreadyExists is true for VPP's "already exists" retvals (entry, bridge
// domain, address on this interface), which idempotent re-application
// (reconcile, a second pod on a network) expects. An address in use on
// another interface is a real conflict and stays an error.
func isAlreadyExists(err error) bool {
	var ve api.VPPApiError
	if errors.As(err, &ve) {
		switch ve {
		case api.VALUE_EXIST, api.DUPLICATE_IF_ADDRESS, api.ENTRY_ALREADY_EXISTS, api.BD_ALREADY_EXISTS, api.ADDRESS_FOUND_FOR_INTERFACE:
			return true
		}
		return false
	}
	return strings.Contains(err.Error(), "already exists")
}
