package vppagent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"sort"
	"strings"
	"sync"

	"go.fd.io/govpp/api"
	"go.fd.io/govpp/binapi/acl"
	afpacket "go.fd.io/govpp/binapi/af_packet"
	"go.fd.io/govpp/binapi/arp"
	"go.fd.io/govpp/binapi/avf"
	interfaces "go.fd.io/govpp/binapi/interface"
	"go.fd.io/govpp/binapi/interface_types"
	"go.fd.io/govpp/binapi/ip"
	"go.fd.io/govpp/binapi/ip6_nd"
	"go.fd.io/govpp/binapi/ip_types"
	"go.fd.io/govpp/binapi/l2"
	"go.fd.io/govpp/binapi/memclnt"
	"go.fd.io/govpp/binapi/memif"
	"go.fd.io/govpp/binapi/vhost_user"
	"go.fd.io/govpp/binapi/vlib"
)

// fakeVPP is an in-memory model of the VPP objects the agent touches,
// behind govpp's api.Connection, so that the translation from the model
// to API calls is tested without a VPP. It enforces the rules that make
// ordering matter (no deleting a socket in use, no deleting a bridge domain
// with members, no deleting a parent with sub-interfaces).
type fakeVPP struct {
	mu     sync.Mutex
	next   uint32
	ifs    map[uint32]*fakeIf
	bds    map[uint32]string
	socks  map[uint32]string
	routes map[string]uint32 // "table/prefix" -> sw_if_index
	proxy  map[string]bool   // proxy ARP ranges and ND proxies
	acls   map[uint32]string // ACL index -> tag
	rules  map[uint32]int    // ACL index -> number of rules
	cli    []string          // debug CLI commands run
	calls  []string
	// avfRefuse, when not 0, is avf_create's retval (VPP cannot open the
	// PCI device).
	avfRefuse int32
	// before, when set, sees each request first (a test cancels its
	// caller's context there); a request whose context is done then
	// fails, as govpp's do.
	before func(any)
	// fail, when set, may fail a request (VPP died under it).
	fail func(any) error
}

// gate runs before on m and fails a request whose context is done.
func (f *fakeVPP) gate(ctx context.Context, m api.Message) error {
	if f.before != nil {
		f.before(m)
	}
	if f.fail != nil {
		if err := f.fail(m); err != nil {
			return err
		}
	}
	return ctx.Err()
}

type fakeIf struct {
	name, tag string
	sup       uint32
	sock      uint32
	bd        uint32
	up        bool
	unnumTo   uint32
	table     uint32
	addrs     []string
	vtr       uint32
}

func newFakeVPP() *fakeVPP {
	f := &fakeVPP{next: 1, ifs: map[uint32]*fakeIf{0: {name: "local0"}}, bds: map[uint32]string{},
		socks: map[uint32]string{0: "/run/vpp/memif.sock"}, routes: map[string]uint32{}, proxy: map[string]bool{}}
	return f
}

func (f *fakeVPP) NewStream(ctx context.Context, _ ...api.StreamOption) (api.Stream, error) {
	return &fakeStream{f: f, ctx: ctx}, nil
}

func (f *fakeVPP) Invoke(ctx context.Context, req, reply api.Message) error {
	if err := f.gate(ctx, req); err != nil {
		return err
	}
	rs := f.handle(req)
	if len(rs) != 1 || reflect.TypeOf(rs[0]) != reflect.TypeOf(reply) {
		return fmt.Errorf("fakeVPP: %T answered %d messages, want one %T", req, len(rs), reply)
	}
	reflect.ValueOf(reply).Elem().Set(reflect.ValueOf(rs[0]).Elem())
	return nil
}

func (f *fakeVPP) WatchEvent(context.Context, api.Message) (api.Watcher, error) {
	return nil, errors.New("fakeVPP: no events")
}

type fakeStream struct {
	f   *fakeVPP
	ctx context.Context
	q   []api.Message
}

func (s *fakeStream) Context() context.Context { return s.ctx }
func (s *fakeStream) Close() error             { return nil }
func (s *fakeStream) SendMsg(m api.Message) error {
	if err := s.f.gate(s.ctx, m); err != nil {
		return err
	}
	s.q = append(s.q, s.f.handle(m)...)
	return nil
}
func (s *fakeStream) RecvMsg() (api.Message, error) {
	if len(s.q) == 0 {
		return nil, errors.New("fakeVPP: no reply queued")
	}
	m := s.q[0]
	s.q = s.q[1:]
	return m, nil
}

func (f *fakeVPP) newIf(name string) (uint32, *fakeIf) {
	idx := f.next
	f.next++
	i := &fakeIf{name: name, sup: idx, unnumTo: invalidIndex}
	f.ifs[idx] = i
	return idx, i
}

const (
	rvNoSuch = int32(api.NO_SUCH_ENTRY)
	rvInUse  = int32(api.UNEXPECTED_INTF_STATE)
)

func (f *fakeVPP) handle(m api.Message) []api.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, m.GetMessageName())
	idxOK := func(i interface_types.InterfaceIndex) bool { _, ok := f.ifs[uint32(i)]; return ok }
	rv := func(ok bool) int32 {
		if ok {
			return 0
		}
		return rvNoSuch
	}
	switch r := m.(type) {
	case *memclnt.ControlPing:
		return []api.Message{&memclnt.ControlPingReply{}}
	case *interfaces.SwInterfaceDump:
		var out []api.Message
		for _, idx := range f.sortedIfs() {
			i := f.ifs[idx]
			d := &interfaces.SwInterfaceDetails{SwIfIndex: interface_types.InterfaceIndex(idx), SupSwIfIndex: i.sup, InterfaceName: i.name, Tag: i.tag}
			if i.up {
				d.Flags = interface_types.IF_STATUS_API_FLAG_ADMIN_UP
			}
			out = append(out, d)
		}
		return append(out, &memclnt.ControlPingReply{})
	case *interfaces.SwInterfaceTagAddDel:
		if i, ok := f.ifs[uint32(r.SwIfIndex)]; ok {
			i.tag = r.Tag
		}
		return []api.Message{&interfaces.SwInterfaceTagAddDelReply{Retval: rv(idxOK(r.SwIfIndex))}}
	case *interfaces.SwInterfaceSetFlags:
		if i, ok := f.ifs[uint32(r.SwIfIndex)]; ok {
			i.up = r.Flags&interface_types.IF_STATUS_API_FLAG_ADMIN_UP != 0
		}
		return []api.Message{&interfaces.SwInterfaceSetFlagsReply{Retval: rv(idxOK(r.SwIfIndex))}}
	case *interfaces.SwInterfaceSetMtu:
		return []api.Message{&interfaces.SwInterfaceSetMtuReply{Retval: rv(idxOK(r.SwIfIndex))}}
	case *memif.MemifSocketFilenameAddDelV2:
		if !r.IsAdd {
			for _, i := range f.ifs {
				if i.sock == r.SocketID && len(i.name) > 5 && i.name[:5] == "memif" {
					return []api.Message{&memif.MemifSocketFilenameAddDelV2Reply{Retval: rvInUse}}
				}
			}
			_, ok := f.socks[r.SocketID]
			delete(f.socks, r.SocketID)
			return []api.Message{&memif.MemifSocketFilenameAddDelV2Reply{Retval: rv(ok)}}
		}
		id := uint32(1)
		for f.socks[id] != "" {
			id++
		}
		f.socks[id] = r.SocketFilename
		return []api.Message{&memif.MemifSocketFilenameAddDelV2Reply{SocketID: id}}
	case *acl.ACLDump:
		var out []api.Message
		for id, tag := range f.acls {
			out = append(out, &acl.ACLDetails{ACLIndex: id, Tag: tag})
		}
		return append(out, &memclnt.ControlPingReply{})
	case *acl.ACLAddReplace:
		if f.acls == nil {
			f.acls = map[uint32]string{}
		}
		idx := r.ACLIndex
		if idx == ^uint32(0) {
			f.next++
			idx = f.next
		} else if _, ok := f.acls[idx]; !ok {
			return []api.Message{&acl.ACLAddReplaceReply{Retval: rvNoSuch}}
		}
		f.acls[idx] = r.Tag
		if f.rules == nil {
			f.rules = map[uint32]int{}
		}
		f.rules[idx] = len(r.R)
		return []api.Message{&acl.ACLAddReplaceReply{ACLIndex: idx}}
	case *acl.ACLDel:
		_, ok := f.acls[r.ACLIndex]
		delete(f.acls, r.ACLIndex)
		return []api.Message{&acl.ACLDelReply{Retval: rv(ok)}}
	case *acl.ACLInterfaceSetACLList:
		return []api.Message{&acl.ACLInterfaceSetACLListReply{Retval: rv(idxOK(r.SwIfIndex))}}
	case *memif.MemifSocketFilenameDump:
		var out []api.Message
		for id, s := range f.socks {
			out = append(out, &memif.MemifSocketFilenameDetails{SocketID: id, SocketFilename: s})
		}
		return append(out, &memclnt.ControlPingReply{})
	case *memif.MemifDump:
		var out []api.Message
		for idx, i := range f.ifs {
			if strings.HasPrefix(i.name, "memif") {
				out = append(out, &memif.MemifDetails{SwIfIndex: interface_types.InterfaceIndex(idx), SocketID: i.sock})
			}
		}
		return append(out, &memclnt.ControlPingReply{})
	case *memif.MemifCreateV2:
		if _, ok := f.socks[r.SocketID]; !ok {
			return []api.Message{&memif.MemifCreateV2Reply{Retval: rvNoSuch}}
		}
		idx, i := f.newIf(fmt.Sprintf("memif%d/%d", r.SocketID, r.ID))
		i.sock = r.SocketID
		return []api.Message{&memif.MemifCreateV2Reply{SwIfIndex: interface_types.InterfaceIndex(idx)}}
	case *memif.MemifDelete:
		ok := idxOK(r.SwIfIndex)
		f.deleteIf(uint32(r.SwIfIndex))
		return []api.Message{&memif.MemifDeleteReply{Retval: rv(ok)}}
	case *vhost_user.CreateVhostUserIfV2:
		idx, i := f.newIf(fmt.Sprintf("VirtualEthernet0/0/%d", f.next))
		i.tag = r.Tag
		return []api.Message{&vhost_user.CreateVhostUserIfV2Reply{SwIfIndex: interface_types.InterfaceIndex(idx)}}
	case *vhost_user.DeleteVhostUserIf:
		ok := idxOK(r.SwIfIndex)
		f.deleteIf(uint32(r.SwIfIndex))
		return []api.Message{&vhost_user.DeleteVhostUserIfReply{Retval: rv(ok)}}
	case *l2.BridgeDomainAddDelV2:
		if r.IsAdd {
			if _, ok := f.bds[r.BdID]; ok {
				return []api.Message{&l2.BridgeDomainAddDelV2Reply{Retval: int32(api.BD_ALREADY_EXISTS)}}
			}
			f.bds[r.BdID] = r.BdTag
			return []api.Message{&l2.BridgeDomainAddDelV2Reply{BdID: r.BdID}}
		}
		for _, i := range f.ifs {
			if i.bd == r.BdID {
				return []api.Message{&l2.BridgeDomainAddDelV2Reply{Retval: int32(api.BD_IN_USE)}}
			}
		}
		_, ok := f.bds[r.BdID]
		delete(f.bds, r.BdID)
		return []api.Message{&l2.BridgeDomainAddDelV2Reply{Retval: rv(ok)}}
	case *l2.BridgeDomainDump:
		var out []api.Message
		for id, tag := range f.bds {
			if r.BdID != invalidIndex && r.BdID != id {
				continue
			}
			d := &l2.BridgeDomainDetails{BdID: id, BdTag: tag}
			for idx, i := range f.ifs {
				if i.bd == id {
					d.SwIfDetails = append(d.SwIfDetails, l2.BridgeDomainSwIf{SwIfIndex: interface_types.InterfaceIndex(idx)})
				}
			}
			d.NSwIfs = uint32(len(d.SwIfDetails))
			out = append(out, d)
		}
		return append(out, &memclnt.ControlPingReply{})
	case *l2.SwInterfaceSetL2Bridge:
		i, ok := f.ifs[uint32(r.RxSwIfIndex)]
		if _, bdok := f.bds[r.BdID]; !bdok && r.Enable {
			ok = false
		}
		if ok {
			i.bd = 0
			if r.Enable {
				i.bd = r.BdID
			}
		}
		return []api.Message{&l2.SwInterfaceSetL2BridgeReply{Retval: rv(ok)}}
	case *l2.L2InterfaceVlanTagRewrite:
		if i, ok := f.ifs[uint32(r.SwIfIndex)]; ok {
			i.vtr = r.VtrOp
		}
		return []api.Message{&l2.L2InterfaceVlanTagRewriteReply{Retval: rv(idxOK(r.SwIfIndex))}}
	case *interfaces.CreateVlanSubif:
		p, ok := f.ifs[uint32(r.SwIfIndex)]
		if !ok {
			return []api.Message{&interfaces.CreateVlanSubifReply{Retval: rvNoSuch}}
		}
		idx, i := f.newIf(fmt.Sprintf("%s.%d", p.name, r.VlanID))
		i.sup = uint32(r.SwIfIndex)
		return []api.Message{&interfaces.CreateVlanSubifReply{SwIfIndex: interface_types.InterfaceIndex(idx)}}
	case *interfaces.DeleteSubif:
		ok := idxOK(r.SwIfIndex)
		f.deleteIf(uint32(r.SwIfIndex))
		return []api.Message{&interfaces.DeleteSubifReply{Retval: rv(ok)}}
	case *interfaces.CreateLoopback:
		idx, _ := f.newIf(fmt.Sprintf("loop%d", f.next))
		return []api.Message{&interfaces.CreateLoopbackReply{SwIfIndex: interface_types.InterfaceIndex(idx)}}
	case *interfaces.DeleteLoopback:
		ok := idxOK(r.SwIfIndex)
		f.deleteIf(uint32(r.SwIfIndex))
		return []api.Message{&interfaces.DeleteLoopbackReply{Retval: rv(ok)}}
	case *afpacket.AfPacketCreateV3:
		idx, _ := f.newIf("host-" + r.HostIfName)
		return []api.Message{&afpacket.AfPacketCreateV3Reply{SwIfIndex: interface_types.InterfaceIndex(idx)}}
	case *avf.AvfCreate:
		if f.avfRefuse != 0 {
			return []api.Message{&avf.AvfCreateReply{Retval: f.avfRefuse}}
		}
		a := r.PciAddr
		idx, _ := f.newIf(fmt.Sprintf("avf-%x/%x/%x/%x", a&0xffff, a>>16&0xff, a>>24&0x1f, a>>29))
		return []api.Message{&avf.AvfCreateReply{SwIfIndex: interface_types.InterfaceIndex(idx)}}
	case *avf.AvfDelete:
		ok := idxOK(r.SwIfIndex)
		f.deleteIf(uint32(r.SwIfIndex))
		return []api.Message{&avf.AvfDeleteReply{Retval: rv(ok)}}
	case *afpacket.AfPacketDelete:
		for idx, i := range f.ifs {
			if i.name == "host-"+r.HostIfName {
				f.deleteIf(idx)
				return []api.Message{&afpacket.AfPacketDeleteReply{}}
			}
		}
		return []api.Message{&afpacket.AfPacketDeleteReply{Retval: rvNoSuch}}
	case *ip.IPAddressDump:
		var out []api.Message
		if i, ok := f.ifs[uint32(r.SwIfIndex)]; ok {
			for _, a := range i.addrs {
				p, _ := ip_types.ParseAddressWithPrefix(a)
				if (p.Address.Af == ip_types.ADDRESS_IP6) == r.IsIPv6 {
					out = append(out, &ip.IPAddressDetails{SwIfIndex: r.SwIfIndex, Prefix: p})
				}
			}
		}
		return append(out, &memclnt.ControlPingReply{})
	case *ip.SwInterfaceIP6EnableDisable:
		if k := fmt.Sprintf("ip6 %d", r.SwIfIndex); f.proxy[k] && r.Enable {
			return []api.Message{&ip.SwInterfaceIP6EnableDisableReply{Retval: int32(api.VALUE_EXIST)}}
		} else {
			f.proxy[k] = r.Enable
		}
		return []api.Message{&ip.SwInterfaceIP6EnableDisableReply{Retval: rv(idxOK(r.SwIfIndex))}}
	case *ip.IPTableAddDel:
		return []api.Message{&ip.IPTableAddDelReply{}}
	case *interfaces.SwInterfaceGetTable:
		var table uint32
		if i, ok := f.ifs[uint32(r.SwIfIndex)]; ok {
			table = i.table
		}
		return []api.Message{&interfaces.SwInterfaceGetTableReply{Retval: rv(idxOK(r.SwIfIndex)), VrfID: table}}
	case *interfaces.SwInterfaceSetTable:
		if i, ok := f.ifs[uint32(r.SwIfIndex)]; ok {
			if i.unnumTo != invalidIndex || len(i.addrs) > 0 {
				return []api.Message{&interfaces.SwInterfaceSetTableReply{Retval: int32(api.ADDRESS_FOUND_FOR_INTERFACE)}}
			}
			i.table = r.VrfID
		}
		return []api.Message{&interfaces.SwInterfaceSetTableReply{Retval: rv(idxOK(r.SwIfIndex))}}
	case *interfaces.SwInterfaceAddDelAddress:
		if i, ok := f.ifs[uint32(r.SwIfIndex)]; ok {
			for _, a := range i.addrs {
				if a == r.Prefix.String() {
					// VPP answers a re-add with "address in use".
					return []api.Message{&interfaces.SwInterfaceAddDelAddressReply{Retval: int32(api.ADDRESS_IN_USE)}}
				}
			}
			i.addrs = append(i.addrs, r.Prefix.String())
		}
		return []api.Message{&interfaces.SwInterfaceAddDelAddressReply{Retval: rv(idxOK(r.SwIfIndex))}}
	case *interfaces.SwInterfaceSetUnnumbered:
		if i, ok := f.ifs[uint32(r.UnnumberedSwIfIndex)]; ok && idxOK(r.SwIfIndex) {
			i.unnumTo = invalidIndex
			if r.IsAdd {
				i.unnumTo = uint32(r.SwIfIndex)
			}
		}
		return []api.Message{&interfaces.SwInterfaceSetUnnumberedReply{Retval: rv(idxOK(r.SwIfIndex) && idxOK(r.UnnumberedSwIfIndex))}}
	case *ip.IPRouteAddDel:
		k := fmt.Sprintf("%d/%s", r.Route.TableID, r.Route.Prefix.String())
		if r.IsAdd {
			f.routes[k] = r.Route.Paths[0].SwIfIndex
		} else {
			delete(f.routes, k)
		}
		return []api.Message{&ip.IPRouteAddDelReply{}}
	case *arp.ProxyArpAddDel:
		f.proxy[fmt.Sprintf("arp %d %s", r.Proxy.TableID, r.Proxy.Low)] = r.IsAdd
		return []api.Message{&arp.ProxyArpAddDelReply{}}
	case *arp.ProxyArpDump:
		var out []api.Message
		for k, on := range f.proxy {
			var table uint32
			var low string
			if n, _ := fmt.Sscanf(k, "arp %d %s", &table, &low); n == 2 && on {
				a, _ := ip_types.ParseIP4Address(low)
				out = append(out, &arp.ProxyArpDetails{Proxy: arp.ProxyArp{TableID: table, Low: a, Hi: a}})
			}
		}
		return append(out, &memclnt.ControlPingReply{})
	case *arp.ProxyArpIntfcEnableDisable:
		f.proxy[fmt.Sprintf("arp-if %d", r.SwIfIndex)] = r.Enable
		return []api.Message{&arp.ProxyArpIntfcEnableDisableReply{Retval: rv(idxOK(r.SwIfIndex))}}
	case *vlib.CliInband:
		f.cli = append(f.cli, r.Cmd)
		return []api.Message{&vlib.CliInbandReply{}}
	case *ip6_nd.IP6ndProxyAddDel:
		f.proxy[fmt.Sprintf("nd %d %s", r.SwIfIndex, r.IP)] = r.IsAdd
		return []api.Message{&ip6_nd.IP6ndProxyAddDelReply{Retval: rv(idxOK(r.SwIfIndex))}}
	}
	panic(fmt.Sprintf("fakeVPP: unexpected message %T", m))
}

func (f *fakeVPP) deleteIf(idx uint32) {
	for k, v := range f.routes {
		if v == idx {
			delete(f.routes, k)
		}
	}
	delete(f.ifs, idx)
}

func (f *fakeVPP) sortedIfs() []uint32 {
	var ids []uint32
	for id := range f.ifs {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(a, b int) bool { return ids[a] < ids[b] })
	return ids
}

// ours returns the telcni-tagged interface tags and bridge domains.
func (f *fakeVPP) ours() (tags []string, bds []uint32, socks []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, i := range f.ifs {
		if isOurs(i.tag) {
			tags = append(tags, i.tag)
		}
	}
	for id, t := range f.bds {
		if isOurs(t) {
			bds = append(bds, id)
		}
	}
	for id, s := range f.socks {
		if id != 0 {
			socks = append(socks, s)
		}
	}
	sort.Strings(tags)
	return
}

func (f *fakeVPP) byTag(tag string) *fakeIf {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, i := range f.ifs {
		if i.tag == tag {
			return i
		}
	}
	return nil
}

// fakeManager is a Manager wired to f as if connected, started by an
// agent with the records keep.
func fakeManager(f *fakeVPP, dir string, keep ...PodInterface) *Manager {
	m := restartedManager(f, dir)
	if err := m.Retain(context.Background(), keep); err != nil {
		panic(err) // Retain reports no error for valid specs
	}
	return m
}

// restartedManager is a Manager wired to f whose agent has not yet handed
// it its records (Retain).
func restartedManager(f *fakeVPP, dir string) *Manager {
	m, _ := NewManager(Config{RunDir: dir + "/run"})
	m.conn.setState(f, nil, "fake", nil, nil)
	return m
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
