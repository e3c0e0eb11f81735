package kernelpath

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/telcni/telcni/policy"
)

// A policy that selects its peers by label resolves to one address per
// peer pod: hundreds of "this host, this protocol, this port" rules. As
// rules, every packet walks them in order and a transaction carries them
// all (31 µs each at ADD). Such peers go into nftables sets instead, one
// per family × protocol (× port or any port), matched by one lookup rule:
// a hash lookup per packet, an element per peer in the transaction. Other
// rules (prefixes, port ranges, no protocol) stay rules.

// minSetSize is the fewest peers worth a set: below it, rules are as fast.
const minSetSize = 4

// Registers of a concatenated set key: the address from the first 32-bit
// register on (NFT_REG32_00, the same bytes as NFT_REG_1), the port in the
// 32-bit register after it (NFT_REG32_01 after an IPv4 address,
// NFT_REG32_04 after an IPv6 one).
const (
	regAddr   = 1
	regPort4  = 9
	regPort6  = 12
	setPrefix = "-set-" // chain name + setPrefix + group: the chain's sets
)

// peerGroup is the allowed host peers of one family, protocol and port
// kind, held in the set named name.
type peerGroup struct {
	name  string
	v6    bool
	proto byte
	ports bool // the key is address . destination port (else address only)
	elems []nftables.SetElement
}

func (g *peerGroup) keyType() nftables.SetDatatype {
	addr := nftables.TypeIPAddr
	if g.v6 {
		addr = nftables.TypeIP6Addr
	}
	if g.ports {
		return nftables.MustConcatSetType(addr, nftables.TypeInetService)
	}
	return addr
}

// splitAllow moves the host peers with a protocol and one port (or any
// port) into groups of at least minSetSize, named after chain; the rest
// stays rules.
func splitAllow(chain string, allow []policy.Rule) (groups []*peerGroup, rest []policy.Rule) {
	byKey := map[string]*peerGroup{}
	members := map[string][]policy.Rule{}
	for _, r := range allow {
		if !r.Peer.IsValid() || r.Peer.Bits() != r.Peer.Addr().BitLen() || r.Protocol == "" || r.Port != r.EndPort {
			rest = append(rest, r)
			continue
		}
		fam := "v4"
		if r.Peer.Addr().Is6() {
			fam = "v6"
		}
		kind := "port"
		if r.Port == 0 {
			kind = "any"
		}
		key := fam + "-" + r.Protocol + "-" + kind
		if byKey[key] == nil {
			byKey[key] = &peerGroup{name: chain + setPrefix + key, v6: fam == "v6", proto: fwProtocols[r.Protocol], ports: kind == "port"}
		}
		members[key] = append(members[key], r)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		g, rs := byKey[k], members[k]
		if len(rs) < minSetSize {
			rest = append(rest, rs...)
			continue
		}
		for _, r := range rs {
			g.elems = append(g.elems, nftables.SetElement{Key: setKey(r.Peer.Addr(), r.Port, g.ports)})
		}
		groups = append(groups, g)
	}
	return groups, rest
}

// setKey is an element's key: the address, then with ports the port in
// network order, padded to the register size.
func setKey(a netip.Addr, port uint16, ports bool) []byte {
	k := a.AsSlice()
	if ports {
		k = append(k, binaryutil.BigEndian.PutUint16(port)...)
		k = append(k, 0, 0)
	}
	return k
}

// lookupExprs matches the peer (source for ingress, destination for
// egress), protocol and port against g's set s, and accepts.
func lookupExprs(g *peerGroup, s *nftables.Set, ingress bool) []expr.Any {
	proto, off, n, portReg := byte(unix.NFPROTO_IPV4), map[bool]uint32{true: 12, false: 16}[ingress], uint32(4), uint32(regPort4)
	if g.v6 {
		proto, off, n, portReg = unix.NFPROTO_IPV6, map[bool]uint32{true: 8, false: 24}[ingress], 16, regPort6
	}
	e := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{g.proto}},
		&expr.Payload{DestRegister: regAddr, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
	}
	if g.ports {
		e = append(e, &expr.Payload{DestRegister: portReg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
	}
	return append(e,
		&expr.Lookup{SourceRegister: regAddr, SetName: s.Name, SetID: s.ID},
		&expr.Verdict{Kind: expr.VerdictAccept})
}

// tableSets lists table's sets (one query for all chains).
func tableSets(c *nftables.Conn, table *nftables.Table) ([]*nftables.Set, error) {
	all, err := c.GetSets(table)
	if err != nil {
		return nil, fmt.Errorf("list sets: %w", err)
	}
	return all, nil
}

// chainSets picks the sets of chain out of all (see setPrefix).
func chainSets(all []*nftables.Set, chain string) map[string]*nftables.Set {
	out := map[string]*nftables.Set{}
	for _, s := range all {
		if strings.HasPrefix(s.Name, chain+setPrefix) {
			out[s.Name] = s
		}
	}
	return out
}

// fillSets makes each group's set hold exactly its elements, in the
// transaction under way: an existing set is emptied and refilled, a
// missing one added. The chain's other sets are emptied. It returns the
// sets by group name.
func fillSets(c *nftables.Conn, table *nftables.Table, have map[string]*nftables.Set, groups []*peerGroup) (map[string]*nftables.Set, error) {
	out := map[string]*nftables.Set{}
	for _, s := range have {
		c.FlushSet(s)
	}
	for _, g := range groups {
		if s, ok := have[g.name]; ok {
			if err := c.SetAddElements(s, g.elems); err != nil {
				return nil, fmt.Errorf("set %s: %w", g.name, err)
			}
			out[g.name] = s
			continue
		}
		s := &nftables.Set{Table: table, Name: g.name, KeyType: g.keyType(), Concatenation: g.ports}
		if err := c.AddSet(s, g.elems); err != nil {
			return nil, fmt.Errorf("set %s: %w", g.name, err)
		}
		out[g.name] = s
	}
	return out, nil
}
