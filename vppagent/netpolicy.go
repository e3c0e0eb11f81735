package vppagent

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"go.fd.io/govpp/binapi/acl_types"
	"go.fd.io/govpp/binapi/ip_types"

	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/policy"
)

// MultiNetworkPolicy on memif and vhost-user interfaces goes into the same
// ACL per direction as the network's firewall (replaced in place, bound
// throughout), after the firewall's rules:
//
//  1. the firewall's rules, first match decides (as on the kernel paths);
//  2. direction isolated: ICMPv6 neighbour discovery permitted, then one
//     rule per allowed peer prefix × protocol × port range, then VPP's
//     implicit deny; direction open: permit any.
//
// Once a policy isolates either direction every permit of both ACLs is
// permit+reflect: VPP keeps a session per flow it let through and lets the
// flow's replies back whatever the other direction's rules say (conntrack's
// "established, reply direction" on the kernel paths). Replacing an ACL
// moves its interfaces to a new policy epoch; with the acl plugin's
// reclassify-sessions on (set whenever a policy isolates), a session of an
// older epoch is dropped and its next packet judged by the new rules: a
// flow the policy no longer allows stops.
//
// The rules of each interface are kept here, by pod tag, and not only in
// VPP: reconcile rebuilds the ACLs from them after VPP restarts.
type podPolicies struct {
	mu sync.Mutex
	m  map[string]policy.Rules
	// written holds the tags whose ACLs this Manager has written. Until
	// it has, ACLs found in VPP are an earlier agent's, built with the
	// policy it knew: a reconcile keeps them as they are rather than
	// rebuild them from the firewall alone, which would open the pod
	// until the policy controller's first pass.
	written map[string]bool
}

func newPodPolicies() *podPolicies {
	return &podPolicies{m: map[string]policy.Rules{}, written: map[string]bool{}}
}

func (m *Manager) policyStore() *podPolicies { return m.policies }

// policyOf returns the rules set for the pod interface tagged tag, and
// whether any were ever set (open rules are kept until applied, so the
// policy ACLs they replace get removed).
func (m *Manager) policyOf(tag string) (policy.Rules, bool) {
	s := m.policyStore()
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.m[tag]
	return r, ok
}

// forgetPolicy drops the rules of a deleted pod interface.
func (m *Manager) forgetPolicy(tag string) {
	m.setPolicyOf(tag, policy.Rules{}, false)
	s := m.policyStore()
	s.mu.Lock()
	delete(s.written, tag)
	s.mu.Unlock()
}

// aclsWritten reports whether this Manager wrote the ACLs of tag (see
// podPolicies.written); markWritten records that it did.
func (m *Manager) aclsWritten(tag string) bool {
	s := m.policyStore()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.written[tag]
}

func (m *Manager) markWritten(tag string) {
	s := m.policyStore()
	s.mu.Lock()
	s.written[tag] = true
	s.mu.Unlock()
}

func (m *Manager) setPolicyOf(tag string, r policy.Rules, keep bool) {
	s := m.policyStore()
	s.mu.Lock()
	defer s.mu.Unlock()
	if keep {
		s.m[tag] = r
	} else {
		delete(s.m, tag)
	}
}

// EnforcePolicy applies r to the record's interface (agent.PolicyEnforcer).
func (p *Path) EnforcePolicy(ctx context.Context, rec *attach.Record, r policy.Rules) error {
	return coded(p.m.SetPolicy(ctx, rec.ContainerID+"/"+rec.IfName, r))
}

// SetPolicy sets the MultiNetworkPolicy rules of the interface recorded
// under key and applies them. While VPP is unreachable the rules are kept
// and the reconcile at the next connect applies them.
func (m *Manager) SetPolicy(ctx context.Context, key string, r policy.Rules) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, ok := m.recs.get(key)
	if !ok {
		return nil // gone: nothing to protect
	}
	tag := rec.Spec.Tag()
	_, had := m.policyOf(tag)
	if !had && r.Open() && len(rec.Spec.Network.Firewall) > 0 && m.aclsWritten(tag) {
		return nil // the ACLs hold the firewall alone already (reconcile made them so)
	}
	if slices.Contains(m.conn.MissingPlugins(), "acl") {
		if r.Open() {
			return nil
		}
		return &MissingPluginError{Network: rec.Spec.Network.Name, Group: "acl", Socket: m.conn.Socket()}
	}
	ctx, cancel := m.bound(ctx)
	defer cancel()
	c, err := m.conn.API()
	if err != nil {
		m.setPolicyOf(tag, r, true)
		m.log.Warn("VPP unavailable: the policy is applied at the next reconcile", "tag", tag, "err", err)
		return nil
	}
	v := &vpp{conn: c}
	if !had && r.Open() {
		// Open, and never set since the agent started: only an ACL an
		// earlier run of the agent left holds a policy to remove.
		all, err := v.acls(ctx)
		if err != nil {
			return lost(ctx, err)
		}
		stale := false
		for _, t := range all {
			stale = stale || t == aclTag(tag, "ingress") || t == aclTag(tag, "egress")
		}
		if !stale {
			return nil
		}
	}
	m.setPolicyOf(tag, r, true)
	if err := m.applyFirewall(ctx, v, &rec); err != nil {
		return lost(ctx, err)
	}
	if r.Open() && len(rec.Spec.Network.Firewall) == 0 {
		m.setPolicyOf(tag, r, false) // its ACLs are gone: forget it
	}
	return nil
}

// podACL is one direction's ACL of a pod interface: the firewall's rules,
// then the policy's. nil: no ACL for that direction.
func podACL(fw []FirewallRule, pol policy.Rules, dir string) []acl_types.ACLRule {
	if pol.Open() {
		return aclRules(fw, dir)
	}
	permit := acl_types.ACL_ACTION_API_PERMIT_REFLECT
	out := firewallACL(fw, dir, permit)
	d := pol.Ingress
	if dir == "egress" {
		d = pol.Egress
	}
	if !d.Isolated {
		return append(out, permitAny(permit)...)
	}
	// Neighbour discovery (router and neighbour solicitation and
	// advertisement, redirect): without it no IPv6 address resolves.
	out = append(out, acl_types.ACLRule{IsPermit: permit, Proto: ip_types.IP_API_PROTO_ICMP6,
		SrcPrefix: toPrefix(any6), DstPrefix: toPrefix(any6),
		SrcportOrIcmptypeFirst: 133, SrcportOrIcmptypeLast: 137, DstportOrIcmpcodeLast: 255})
	for _, r := range d.Allow {
		peers := []netip.Prefix{r.Peer}
		if !r.Peer.IsValid() {
			peers = []netip.Prefix{any4, any6}
		}
		for _, peer := range peers {
			local := any4
			if peer.Addr().Is6() {
				local = any6
			}
			rule := acl_types.ACLRule{IsPermit: permit, Proto: aclProtocols[r.Protocol],
				SrcportOrIcmptypeLast: 65535, DstportOrIcmpcodeLast: 65535}
			if r.Port != 0 || r.EndPort != 0 {
				rule.DstportOrIcmpcodeFirst, rule.DstportOrIcmpcodeLast = r.Port, r.EndPort
			}
			setEnds(&rule, dir, peer, local)
			out = append(out, rule)
		}
	}
	return out
}

// reclassifySessions makes the acl plugin drop sessions made under an ACL
// since replaced (off by default: a running flow would outlive the policy
// that stopped allowing it). VPP has no API message for it: the CLI.
func (v *vpp) reclassifySessions(ctx context.Context) error {
	out, err := v.cli(ctx, "set acl-plugin reclassify-sessions 1")
	if err != nil {
		return fmt.Errorf("acl plugin: reclassify sessions: %w", err)
	}
	if out = strings.TrimSpace(out); out != "" {
		return fmt.Errorf("acl plugin: reclassify sessions: %s", out)
	}
	return nil
}
