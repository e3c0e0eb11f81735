package kernelpath

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
)

// The pod's firewall lives in one nftables table of the pod's own netns,
// so it needs no host state and dies with the pod. Base chains "input" and
// "output" jump, by interface, to a chain per pod interface holding that
// network's rules in order: the first rule that matches decides, and
// traffic no rule matches is accepted (end a list with a bare drop rule
// for default-deny).
const (
	fwTable  = "telcni"
	fwInput  = "input"
	fwOutput = "output"
)

func fwChainName(ifName, dir string) string { return dir + "-" + ifName }

var fwProtocols = map[string]byte{
	"tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP, "sctp": unix.IPPROTO_SCTP,
	"icmp": unix.IPPROTO_ICMP, "icmpv6": unix.IPPROTO_ICMPV6,
}

// ApplyFirewall installs the network's rules for the pod interface.
func ApplyFirewall(target netns.NsHandle, req *attach.Request) error {
	if len(req.Network.Firewall) == 0 {
		return nil
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(target)))
	if err != nil {
		return fmt.Errorf("nftables in %s: %w", req.Netns, err)
	}
	table := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: fwTable})
	base := baseChains(c, table)
	for _, dir := range []string{"ingress", "egress"} {
		name := fwChainName(req.IfName, dir)
		chain := c.AddChain(&nftables.Chain{Name: name, Table: table})
		for i, r := range req.Network.Firewall {
			if r.Direction != dir {
				continue
			}
			for _, exprs := range ruleExprs(r) {
				c.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: exprs, UserData: []byte(fmt.Sprintf("firewall[%d]", i))})
			}
		}
		hook, key := base[fwInput], expr.MetaKeyIIFNAME
		if dir == "egress" {
			hook, key = base[fwOutput], expr.MetaKeyOIFNAME
		}
		c.AddRule(&nftables.Rule{Table: table, Chain: hook, UserData: []byte(req.IfName), Exprs: []expr.Any{
			&expr.Meta{Key: key, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifnameBytes(req.IfName)},
			&expr.Verdict{Kind: expr.VerdictJump, Chain: name},
		}})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("network %s: install firewall for %s: %w", req.Network.Key(), req.IfName, err)
	}
	return nil
}

// ruleExprs turns one rule into nftables rules: one per destination port
// (none: one), each "[family] [l4proto] [address] [dport] verdict".
func ruleExprs(r api.FirewallRule) [][]expr.Any {
	var head []expr.Any
	if r.CIDR != "" {
		p := netip.MustParsePrefix(r.CIDR).Masked()
		// Ingress matches the peer as source, egress as destination.
		off := map[bool]uint32{true: 12, false: 16}[r.Direction == "ingress"]
		proto := byte(unix.NFPROTO_IPV4)
		if p.Addr().Is6() {
			off = map[bool]uint32{true: 8, false: 24}[r.Direction == "ingress"]
			proto = unix.NFPROTO_IPV6
		}
		n := uint32(p.Addr().BitLen() / 8)
		head = append(head,
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: maskBytes(p), Xor: make([]byte, n)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Addr().AsSlice()},
		)
	}
	if r.Protocol != "" {
		head = append(head,
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{fwProtocols[r.Protocol]}},
		)
	}
	verdict := &expr.Verdict{Kind: expr.VerdictAccept}
	if r.Action == "drop" {
		verdict = &expr.Verdict{Kind: expr.VerdictDrop}
	}
	if len(r.Ports) == 0 {
		return [][]expr.Any{append(append([]expr.Any{}, head...), &expr.Counter{}, verdict)}
	}
	var out [][]expr.Any
	for _, port := range r.Ports {
		e := append([]expr.Any{}, head...)
		e = append(e,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(uint16(port))},
			&expr.Counter{}, verdict)
		out = append(out, e)
	}
	return out
}

func maskBytes(p netip.Prefix) []byte {
	n := p.Addr().BitLen() / 8
	m := make([]byte, n)
	for i := 0; i < p.Bits(); i++ {
		m[i/8] |= 1 << (7 - uint(i%8))
	}
	return m
}

// ifnameBytes is an interface name as nftables compares it: IFNAMSIZ bytes,
// NUL padded.
func ifnameBytes(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// RemoveFirewall deletes the interface's chains (firewall and network
// policy) and the jumps to them. It looks whether there are any rather
// than at the network's rules: policy chains exist without them.
func RemoveFirewall(target netns.NsHandle, rec *attach.Record) error {
	c, err := nftables.New(nftables.WithNetNSFd(int(target)))
	if err != nil {
		return fmt.Errorf("nftables in %s: %w", rec.Netns, err)
	}
	have, err := tableChains(c)
	if err != nil && len(rec.Network.Firewall) == 0 {
		// nftables does not answer (a kernel without nf_tables): then no
		// policy chain can exist either, and DEL must not fail for it.
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", rec.Netns, err)
	}
	if len(have) == 0 {
		return nil // no table: nothing of ours is left
	}
	table := &nftables.Table{Family: nftables.TableFamilyINet, Name: fwTable}
	for _, base := range []string{fwInput, fwOutput} {
		if !have[base] {
			continue
		}
		rules, err := c.GetRules(table, &nftables.Chain{Name: base, Table: table})
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				return nil // no table: nothing of ours is left
			}
			return fmt.Errorf("list firewall rules in %s: %w", rec.Netns, err)
		}
		for _, r := range rules {
			if tag := string(r.UserData); tag == rec.IfName || tag == mnpJumpTag+rec.IfName {
				if err := c.DelRule(r); err != nil {
					return fmt.Errorf("delete firewall jump for %s: %w", rec.IfName, err)
				}
			}
		}
	}
	// The policy chains' peer sets, unused once the chains are gone (only
	// an interface with a policy chain can have any).
	var sets []*nftables.Set
	if have[mnpChainName(rec.IfName, "ingress")] || have[mnpChainName(rec.IfName, "egress")] {
		if sets, err = tableSets(c, table); err != nil {
			return fmt.Errorf("%s: %w", rec.Netns, err)
		}
	}
	for _, dir := range []string{"ingress", "egress"} {
		for _, name := range []string{fwChainName(rec.IfName, dir), mnpChainName(rec.IfName, dir)} {
			if have[name] {
				c.DelChain(&nftables.Chain{Name: name, Table: table})
			}
		}
		for _, s := range chainSets(sets, mnpChainName(rec.IfName, dir)) {
			c.DelSet(s)
		}
	}
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove firewall of %s in %s: %w", rec.IfName, rec.Netns, err)
	}
	// The pod's last firewalled interface takes the table (and its base
	// chains) with it: nothing of telcni's stays in a pod's netns.
	if have, err = tableChains(c); err != nil {
		return fmt.Errorf("%s: %w", rec.Netns, err)
	}
	for name := range have {
		if name != fwInput && name != fwOutput {
			return nil // another interface's chains remain
		}
	}
	c.DelTable(table)
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove firewall table in %s: %w", rec.Netns, err)
	}
	return nil
}

// checkFirewall reports a missing firewall chain of the interface.
func checkFirewall(target netns.NsHandle, rec *attach.Record) error {
	if len(rec.Network.Firewall) == 0 {
		return nil
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(target)))
	if err != nil {
		return fmt.Errorf("nftables in %s: %w", rec.Netns, err)
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return fmt.Errorf("list firewall chains in %s: %w", rec.Netns, err)
	}
	for _, dir := range []string{"ingress", "egress"} {
		want := fwChainName(rec.IfName, dir)
		found := false
		for _, ch := range chains {
			if ch.Table.Name == fwTable && ch.Name == want {
				found = true
			}
		}
		if !found {
			return attach.Errorf(attach.CodeCheckFailed, "%s in %s: firewall chain %s missing", rec.IfName, rec.Netns, want)
		}
	}
	return nil
}
