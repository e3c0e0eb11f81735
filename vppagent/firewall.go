package vppagent

import (
	"context"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strings"

	"go.fd.io/govpp/binapi/acl_types"
	"go.fd.io/govpp/binapi/ip_types"
)

// FirewallRule is one of the network's filter rules (api.FirewallRule).
type FirewallRule struct {
	Direction string       `json:"direction"` // ingress (to the pod) | egress (from the pod)
	Drop      bool         `json:"drop,omitempty"`
	Protocol  string       `json:"protocol,omitempty"`
	CIDR      netip.Prefix `json:"cidr,omitzero"`
	Ports     []int        `json:"ports,omitempty"`
}

var aclProtocols = map[string]ip_types.IPProto{
	"tcp": ip_types.IP_API_PROTO_TCP, "udp": ip_types.IP_API_PROTO_UDP, "sctp": ip_types.IP_API_PROTO_SCTP,
	"icmp": ip_types.IP_API_PROTO_ICMP, "icmpv6": ip_types.IP_API_PROTO_ICMP6,
}

// aclTag names a pod interface's ACL for one direction, so that reconcile
// can tell whose it is. VPP's ACL tags hold 63 bytes and a pod tag may use
// them all, so the pod tag is hashed: "telcni:acl:<hash>:<dir>".
func aclTag(podTag, dir string) string {
	h := fnv.New64a()
	h.Write([]byte(podTag))
	return fmt.Sprintf("%sacl:%016x:%s", tagPrefix, h.Sum64(), dir)
}

var (
	any4 = netip.MustParsePrefix("0.0.0.0/0")
	any6 = netip.MustParsePrefix("::/0")
)

// aclRules translates the network's rules for one direction into a VPP
// ACL. The pod's ingress is traffic VPP sends out of the pod interface, so
// its peer is the source; egress the reverse. VPP ends an ACL with an
// implicit deny, while telcni's rules accept what no rule matches: the ACL
// ends with permit-any for both families.
func aclRules(rules []FirewallRule, dir string) []acl_types.ACLRule {
	out := firewallACL(rules, dir, acl_types.ACL_ACTION_API_PERMIT)
	if len(out) == 0 {
		return nil
	}
	return append(out, permitAny(acl_types.ACL_ACTION_API_PERMIT)...)
}

// firewallACL is the network's rules for one direction, without the
// closing permit-any; permit is the action of accept rules.
func firewallACL(rules []FirewallRule, dir string, permit acl_types.ACLAction) []acl_types.ACLRule {
	var out []acl_types.ACLRule
	for _, r := range rules {
		if r.Direction != dir {
			continue
		}
		peers := []netip.Prefix{r.CIDR}
		if !r.CIDR.IsValid() {
			peers = []netip.Prefix{any4, any6}
		}
		ports := r.Ports
		if len(ports) == 0 {
			ports = []int{-1}
		}
		for _, peer := range peers {
			if (r.Protocol == "icmp" && peer.Addr().Is6()) || (r.Protocol == "icmpv6" && peer.Addr().Is4()) {
				continue
			}
			local := any4
			if peer.Addr().Is6() {
				local = any6
			}
			for _, port := range ports {
				rule := acl_types.ACLRule{IsPermit: permit, Proto: aclProtocols[r.Protocol],
					SrcportOrIcmptypeLast: 65535, DstportOrIcmpcodeLast: 65535}
				if r.Drop {
					rule.IsPermit = acl_types.ACL_ACTION_API_DENY
				}
				if r.Protocol == "icmp" || r.Protocol == "icmpv6" {
					rule.SrcportOrIcmptypeLast, rule.DstportOrIcmpcodeLast = 255, 255
				}
				if port >= 0 {
					rule.DstportOrIcmpcodeFirst, rule.DstportOrIcmpcodeLast = uint16(port), uint16(port)
				}
				setEnds(&rule, dir, peer, local)
				out = append(out, rule)
			}
		}
	}
	return out
}

// permitAny permits everything of both families.
func permitAny(permit acl_types.ACLAction) []acl_types.ACLRule {
	var out []acl_types.ACLRule
	for _, p := range []netip.Prefix{any4, any6} {
		out = append(out, acl_types.ACLRule{IsPermit: permit, SrcPrefix: toPrefix(p), DstPrefix: toPrefix(p),
			SrcportOrIcmptypeLast: 65535, DstportOrIcmpcodeLast: 65535})
	}
	return out
}

// applyFirewall creates or updates the pod interface's ACLs and binds
// them: the pod's egress as VPP input, its ingress as VPP output. It runs
// at every reconcile, so an existing ACL is replaced in place (it stays
// bound while its rules change): the pod is never left unfiltered. The
// ACLs hold the network's firewall, then the interface's
// MultiNetworkPolicy (netpolicy.go).
func (m *Manager) applyFirewall(ctx context.Context, v *vpp, rec *Record) error {
	pol, hasPolicy := m.policyOf(rec.Spec.Tag())
	if len(rec.Spec.Network.Firewall) == 0 && !hasPolicy {
		return nil
	}
	if !pol.Open() {
		if err := v.reclassifySessions(ctx); err != nil {
			return err
		}
	}
	existing, err := v.acls(ctx)
	if err != nil {
		return err
	}
	byTag := map[string]uint32{}
	for idx, tag := range existing {
		byTag[tag] = idx
	}
	podTag := rec.Spec.Tag()
	if !hasPolicy && !m.aclsWritten(podTag) {
		_, eg := byTag[aclTag(podTag, "egress")]
		_, ing := byTag[aclTag(podTag, "ingress")]
		if eg || ing {
			return nil // an earlier agent's, with its policy: kept until the policy is known
		}
	}
	var in, out, stale []uint32
	for _, dir := range []string{"egress", "ingress"} {
		tag := aclTag(rec.Spec.Tag(), dir)
		idx, have := byTag[tag]
		rules := podACL(rec.Spec.Network.Firewall, pol, dir)
		if rules == nil {
			if have {
				stale = append(stale, idx) // this direction lost its rules
			}
			continue
		}
		if !have {
			idx = invalidIndex // VPP numbers a new ACL
		}
		if idx, err = v.aclAddReplace(ctx, idx, tag, rules); err != nil {
			return err
		}
		if dir == "egress" {
			in = append(in, idx)
		} else {
			out = append(out, idx)
		}
	}
	if err := v.setACLs(ctx, rec.SwIfIndex, in, out); err != nil {
		return err
	}
	for _, idx := range stale { // unbound by setACLs above
		if err := v.aclDel(ctx, idx); err != nil {
			return err
		}
	}
	m.markWritten(podTag)
	return nil
}

// removeFirewall deletes the ACLs of the pod interface tagged podTag (the
// interface itself must be gone or unbound first: VPP refuses to delete an
// ACL in use, so callers delete the interface before, or rebind).
func (m *Manager) removeFirewall(ctx context.Context, v *vpp, podTag string) error {
	if slices.Contains(m.conn.MissingPlugins(), "acl") {
		return nil
	}
	all, err := v.acls(ctx)
	if err != nil {
		return err
	}
	for idx, tag := range all {
		if tag == aclTag(podTag, "ingress") || tag == aclTag(podTag, "egress") {
			if err := v.aclDel(ctx, idx); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeOrphanACLs deletes telcni's ACLs whose pod interface no record owns.
func (m *Manager) removeOrphanACLs(ctx context.Context, v *vpp, owned map[string]bool) error {
	if slices.Contains(m.conn.MissingPlugins(), "acl") {
		return nil
	}
	all, err := v.acls(ctx)
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for podTag := range owned {
		keep[aclTag(podTag, "ingress")] = true
		keep[aclTag(podTag, "egress")] = true
	}
	for idx, tag := range all {
		if !strings.HasPrefix(tag, tagPrefix+"acl:") || keep[tag] {
			continue
		}
		m.log.Info("removing unowned ACL", "acl", idx, "tag", tag)
		if err := v.aclDel(ctx, idx); err != nil {
			return fmt.Errorf("remove orphan ACL %d: %w", idx, err)
		}
	}
	return nil
}

// setEnds sets a rule's prefixes for a direction seen from the pod:
// ingress comes from peer to the pod (local), egress goes the other way.
func setEnds(rule *acl_types.ACLRule, dir string, peer, local netip.Prefix) {
	if dir == "ingress" {
		rule.SrcPrefix, rule.DstPrefix = toPrefix(peer), toPrefix(local)
	} else {
		rule.SrcPrefix, rule.DstPrefix = toPrefix(local), toPrefix(peer)
	}
}
