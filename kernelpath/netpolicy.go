package kernelpath

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/policy"
)

// MultiNetworkPolicy lives in the same table as the network's firewall.
// Each pod interface gets two more chains, "mnp-ingress-<if>" and
// "mnp-egress-<if>", and the base chains a second jump per interface,
// after the firewall's: the network's rules decide first (their verdicts
// are final, as without policy), the policy decides what they leave.
//
// An isolated direction's chain is: related packets (ICMP errors) and
// replies of established connections accepted; IPv6 neighbour discovery
// accepted (without it no address on the link resolves); then one accept
// per allowed peer × port; then drop. Packets in a connection's original
// direction are judged every time, not only the first: a policy that stops
// allowing a running flow stops it at once, without a conntrack flush. A
// direction no policy isolates has an empty chain: everything passes.
const (
	mnpPrefix  = "mnp-"
	mnpJumpTag = "mnp:"
	ctDirReply = 1 // IP_CT_DIR_REPLY: the packet goes against its connection's first one
)

func mnpChainName(ifName, dir string) string { return mnpPrefix + dir + "-" + ifName }

// EnforcePolicy applies r to the record's interface in its pod's netns.
func (p *Path) EnforcePolicy(ctx context.Context, rec *attach.Record, r policy.Rules) error {
	return EnforcePolicyInPod(rec, r)
}

// EnforcePolicyInPod applies r to the record's interface in its pod's
// netns (also for paths that hand the pod a kernel netdev of their own,
// as sriov does). A pod whose netns is gone is left to its DEL.
func EnforcePolicyInPod(rec *attach.Record, r policy.Rules) error {
	target, _, done, err := PodNetns(rec.Netns)
	if errors.Is(err, errNetnsGone) {
		return nil // the pod is gone; its DEL comes
	}
	if err != nil {
		return err
	}
	defer done()
	return ApplyNetworkPolicy(target, rec.IfName, r)
}

// ApplyNetworkPolicy replaces the policy chains of interface ifName with r
// in one nftables transaction: the old rules stay in force until the new
// ones are, with no moment in between. An open r where no chain exists
// yet changes nothing (no table is made for nothing).
func ApplyNetworkPolicy(target netns.NsHandle, ifName string, r policy.Rules) error {
	c, err := nftables.New(nftables.WithNetNSFd(int(target)), nftables.WithSockOptions(bigBatch))
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	have, err := tableChains(c)
	if err != nil {
		return err
	}
	if r.Open() && !have[mnpChainName(ifName, "ingress")] && !have[mnpChainName(ifName, "egress")] {
		return nil
	}
	// The table and base chains are added only when missing: re-adding
	// existing ones is an update the kernel commits with a grace period
	// (milliseconds per transaction).
	table := &nftables.Table{Family: nftables.TableFamilyINet, Name: fwTable}
	base := map[string]*nftables.Chain{fwInput: {Name: fwInput, Table: table}, fwOutput: {Name: fwOutput, Table: table}}
	if !have[fwInput] || !have[fwOutput] {
		table = c.AddTable(table)
		base = baseChains(c, table)
	}
	jumped := map[string]bool{}
	for _, name := range []string{fwInput, fwOutput} {
		if !have[name] {
			continue
		}
		rules, err := c.GetRules(table, base[name])
		if err != nil {
			return fmt.Errorf("list %s rules: %w", name, err)
		}
		for _, rule := range rules {
			if string(rule.UserData) == mnpJumpTag+ifName {
				jumped[name] = true
			}
		}
	}
	var all []*nftables.Set
	if have[mnpChainName(ifName, "ingress")] || have[mnpChainName(ifName, "egress")] {
		if all, err = tableSets(c, table); err != nil {
			return err
		}
	}
	for _, dir := range []string{"ingress", "egress"} {
		d, hook, key := r.Ingress, fwInput, expr.MetaKeyIIFNAME
		if dir == "egress" {
			d, hook, key = r.Egress, fwOutput, expr.MetaKeyOIFNAME
		}
		chain := &nftables.Chain{Name: mnpChainName(ifName, dir), Table: table}
		if have[chain.Name] {
			c.FlushChain(chain)
		} else {
			chain = c.AddChain(chain)
		}
		var groups []*peerGroup
		rest := d.Allow
		if d.Isolated {
			groups, rest = splitAllow(chain.Name, d.Allow)
		}
		sets, err := fillSets(c, table, chainSets(all, chain.Name), groups)
		if err != nil {
			return err
		}
		if d.Isolated {
			for _, exprs := range policyExprs(rest, groups, sets, dir == "ingress") {
				c.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: exprs})
			}
		}
		if !jumped[hook] {
			c.AddRule(&nftables.Rule{Table: table, Chain: base[hook], UserData: []byte(mnpJumpTag + ifName), Exprs: []expr.Any{
				&expr.Meta{Key: key, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifnameBytes(ifName)},
				&expr.Verdict{Kind: expr.VerdictJump, Chain: chain.Name},
			}})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("apply network policy to %s: %w", ifName, err)
	}
	return nil
}

// bigBatch lets one transaction carry thousands of rules: the default
// socket buffers (wmem_default, about 208 KiB) hold some 700 of them, and a
// transaction cut in two would not be atomic. SO_SNDBUFFORCE (the agent
// is root) is not capped by wmem_max; it is a limit, not an allocation.
func bigBatch(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for _, opt := range []int{unix.SO_SNDBUFFORCE, unix.SO_RCVBUFFORCE} {
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, 16<<20); e != nil {
				serr = e
			}
		}
	}); err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("netlink socket buffers for a large nftables transaction: %w", serr)
	}
	return nil
}

// baseChains adds (or finds: adding is idempotent) the input and output
// base chains of table.
func baseChains(c *nftables.Conn, table *nftables.Table) map[string]*nftables.Chain {
	accept := nftables.ChainPolicyAccept
	base := map[string]*nftables.Chain{}
	for name, hook := range map[string]*nftables.ChainHook{fwInput: nftables.ChainHookInput, fwOutput: nftables.ChainHookOutput} {
		base[name] = c.AddChain(&nftables.Chain{Name: name, Table: table, Type: nftables.ChainTypeFilter,
			Hooknum: hook, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	}
	return base
}

// tableChains names the chains of telcni's table (none: no table).
func tableChains(c *nftables.Conn) (map[string]bool, error) {
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("list firewall chains: %w", err)
	}
	have := map[string]bool{}
	for _, ch := range chains {
		if ch.Table.Name == fwTable {
			have[ch.Name] = true
		}
	}
	return have, nil
}

// policyExprs is an isolated direction's chain, in order: what is always
// accepted, a lookup per set of host peers (groups, filled in sets), a
// rule per other allowed peer × port, drop.
func policyExprs(allow []policy.Rule, groups []*peerGroup, sets map[string]*nftables.Set, ingress bool) [][]expr.Any {
	accept := &expr.Verdict{Kind: expr.VerdictAccept}
	out := [][]expr.Any{
		{ // ct state related accept
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitRELATED), Xor: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
			accept,
		},
		{ // ct state established ct direction reply accept
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED), Xor: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Ct{Register: 1, Key: expr.CtKeyDIRECTION},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{ctDirReply}},
			accept,
		},
		{ // icmpv6 type 133-137 (router/neighbour solicitation and advertisement, redirect) accept
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_ICMPV6}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
			&expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: []byte{133}, ToData: []byte{137}},
			accept,
		},
	}
	for _, g := range groups {
		out = append(out, lookupExprs(g, sets[g.name], ingress))
	}
	for _, r := range allow {
		var e []expr.Any
		if r.Peer.IsValid() {
			e = append(e, prefixMatch(r.Peer, ingress)...)
		}
		if r.Protocol != "" {
			e = append(e,
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{fwProtocols[r.Protocol]}})
		}
		switch {
		case r.Port == 0 && r.EndPort == 0:
		case r.Port == r.EndPort:
			e = append(e,
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(r.Port)})
		default:
			e = append(e,
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Range{Op: expr.CmpOpEq, Register: 1,
					FromData: binaryutil.BigEndian.PutUint16(r.Port), ToData: binaryutil.BigEndian.PutUint16(r.EndPort)})
		}
		out = append(out, append(e, accept))
	}
	return append(out, []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}})
}

// prefixMatch matches the peer's address: the source of what comes in
// (ingress), the destination of what goes out (egress).
func prefixMatch(p netip.Prefix, ingress bool) []expr.Any {
	p = p.Masked()
	off := map[bool]uint32{true: 12, false: 16}[ingress]
	proto := byte(unix.NFPROTO_IPV4)
	if p.Addr().Is6() {
		off = map[bool]uint32{true: 8, false: 24}[ingress]
		proto = unix.NFPROTO_IPV6
	}
	n := uint32(p.Addr().BitLen() / 8)
	e := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
	}
	if p.Bits() < p.Addr().BitLen() {
		e = append(e, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: maskBytes(p), Xor: make([]byte, n)})
	}
	return append(e, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Addr().AsSlice()})
}
