package api

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
)

type fieldUse int

const (
	forbidden fieldUse = iota
	optional
	required
)

// pathRule says which of the path-specific fields a path uses. A field a
// path does not use is rejected rather than silently ignored: a "vlan: 100"
// on a macvlan network is a mistake the operator must hear about.
type pathRule struct {
	master fieldUse
	vlan   fieldUse
	vxlan  fieldUse
	modes  []string // allowed modes, the first is the default; nil: mode forbidden
}

var pathRules = map[PathKind]pathRule{
	PathIPVLAN:    {master: required, modes: []string{"l2", "l3", "l3s"}},
	PathMACVLAN:   {master: required, modes: []string{"bridge", "private", "vepa", "passthru"}},
	PathVLAN:      {master: required, vlan: required, modes: []string{"macvlan", "ipvlan", "direct"}},
	PathVXLAN:     {vxlan: required, modes: []string{"macvlan", "ipvlan", "direct"}},
	PathSRIOV:     {master: required, vlan: optional},
	PathSRIOVDPDK: {master: required, vlan: optional},
	PathMemif:     {vlan: optional, modes: []string{"ethernet", "ip"}},
	PathVhostUser: {vlan: optional, modes: []string{"server", "client"}},
	PathDelegate:  {},
}

// Paths lists the known path kinds in a stable order (for messages).
func Paths() []string {
	out := make([]string, 0, len(pathRules))
	for k := range pathRules {
		out = append(out, string(k))
	}
	slices.Sort(out)
	return out
}

// DefaultMode returns the mode a path uses when the network sets none.
func (p PathKind) DefaultMode() string {
	r, ok := pathRules[p]
	if !ok || len(r.modes) == 0 {
		return ""
	}
	return r.modes[0]
}

// EffectiveMode is the network's mode, or its path's default.
func (n *Network) EffectiveMode() string {
	if n.Mode != "" {
		return n.Mode
	}
	return n.Path.DefaultMode()
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)

// ValidName reports whether s is a valid network or namespace name
// (a DNS-1123 subdomain, as Kubernetes object names are).
func ValidName(s string) bool { return nameRE.MatchString(s) }

// ValidIfName reports whether s is usable as a Linux interface name.
func ValidIfName(s string) bool {
	if s == "" || len(s) > 15 || s == "." || s == ".." {
		return false
	}
	return !strings.ContainsAny(s, "/: \t\n")
}

// Validate checks the whole network definition and returns a
// *ValidationError listing every problem, or nil.
func (n *Network) Validate() error {
	var fe fieldErrors
	n.validate(&fe, "")
	return fe.err()
}

func (n *Network) validate(fe *fieldErrors, p string) {
	if n.Type != "" && n.Type != PluginTypeName {
		fe.add(join(p, "type"), n.Type, "is not %q", PluginTypeName)
	}
	if n.Name == "" {
		fe.add(join(p, "name"), nil, "is required")
	} else if !ValidName(n.Name) {
		fe.add(join(p, "name"), n.Name, "is not a valid name (lower-case DNS-1123 subdomain)")
	}
	if n.Namespace != "" && !ValidName(n.Namespace) {
		fe.add(join(p, "namespace"), n.Namespace, "is not a valid namespace name")
	}
	rule, ok := pathRules[n.Path]
	switch {
	case n.Path == "":
		fe.add(join(p, "path"), nil, "is required (one of %s)", strings.Join(Paths(), ", "))
	case !ok:
		fe.add(join(p, "path"), string(n.Path), "is not a known path (one of %s)", strings.Join(Paths(), ", "))
	default:
		n.validatePathFields(fe, p, rule)
		n.validateVPP(fe, p)
		n.validateSRIOV(fe, p)
		n.validateDelegate(fe, p)
	}
	if n.MTU != 0 && (n.MTU < 68 || n.MTU > 65535) {
		fe.add(join(p, "mtu"), n.MTU, "is out of range 68-65535")
	}
	n.IPAM.validate(fe, join(p, "ipam"))
	if n.MTU != 0 && n.MTU < 1280 {
		for i, s := range n.IPAM.Subnets {
			if pfx, err := netip.ParsePrefix(s.CIDR); err == nil && pfx.Addr().Is6() {
				fe.add(join(p, "mtu"), n.MTU, "is below 1280, the IPv6 minimum, and ipam.subnets[%d] is IPv6", i)
			}
		}
	}
	if n.PolicyRoutingTable < 0 || n.PolicyRoutingTable > 0xfffffffe ||
		slices.Contains([]int{253, 254, 255}, n.PolicyRoutingTable) {
		fe.add(join(p, "policyRoutingTable"), n.PolicyRoutingTable, "is not a usable routing table id (1-4294967294, not 253-255)")
	}
	for i := range n.Firewall {
		n.Firewall[i].validate(fe, fmt.Sprintf("%s[%d]", join(p, "firewall"), i))
	}
}

func (n *Network) validatePathFields(fe *fieldErrors, p string, rule pathRule) {
	use := func(field string, u fieldUse, set bool, value any) {
		switch {
		case u == forbidden && set:
			fe.add(join(p, field), value, "is not used by path %s", n.Path)
		case u == required && !set:
			fe.add(join(p, field), nil, "is required by path %s", n.Path)
		}
	}
	use("master", rule.master, n.Master != "", n.Master)
	use("vlan", rule.vlan, n.VLAN != 0, n.VLAN)
	use("vxlan", rule.vxlan, n.VXLAN != nil, "{...}")
	if n.Master != "" && rule.master != forbidden && !ValidIfName(n.Master) {
		fe.add(join(p, "master"), n.Master, "is not a valid interface name")
	}
	if n.VLAN != 0 && rule.vlan != forbidden && (n.VLAN < 1 || n.VLAN > 4094) {
		fe.add(join(p, "vlan"), n.VLAN, "is out of range 1-4094")
	}
	if n.Mode != "" {
		if rule.modes == nil {
			fe.add(join(p, "mode"), n.Mode, "is not used by path %s", n.Path)
		} else if !slices.Contains(rule.modes, n.Mode) {
			fe.add(join(p, "mode"), n.Mode, "is not a mode of path %s (one of %s)", n.Path, strings.Join(rule.modes, ", "))
		}
	}
	if n.VXLAN != nil && rule.vxlan != forbidden {
		n.VXLAN.validate(fe, join(p, "vxlan"))
	}
}

func (v *VXLAN) validate(fe *fieldErrors, p string) {
	if v.VNI < 1 || v.VNI > 1<<24-1 {
		fe.add(join(p, "vni"), v.VNI, "is out of range 1-16777215")
	}
	if v.Port < 0 || v.Port > 65535 {
		fe.add(join(p, "port"), v.Port, "is out of range 1-65535")
	}
	switch {
	case v.Group != "" && v.Remote != "":
		fe.add(join(p, "remote"), v.Remote, "cannot be set together with group")
	case v.Group != "":
		if a, err := netip.ParseAddr(v.Group); err != nil || !a.IsMulticast() {
			fe.add(join(p, "group"), v.Group, "is not a multicast IP address")
		}
	case v.Remote != "":
		if a, err := netip.ParseAddr(v.Remote); err != nil || a.IsMulticast() || a.IsUnspecified() {
			fe.add(join(p, "remote"), v.Remote, "is not a unicast IP address")
		}
	}
	if v.Device != "" && !ValidIfName(v.Device) {
		fe.add(join(p, "device"), v.Device, "is not a valid interface name")
	}
}

var firewallProtocols = []string{"", "tcp", "udp", "sctp", "icmp", "icmpv6"}

func (r *FirewallRule) validate(fe *fieldErrors, p string) {
	if r.Direction != "ingress" && r.Direction != "egress" {
		fe.add(join(p, "direction"), r.Direction, "is not ingress or egress")
	}
	if r.Action != "accept" && r.Action != "drop" {
		fe.add(join(p, "action"), r.Action, "is not accept or drop")
	}
	if !slices.Contains(firewallProtocols, r.Protocol) {
		fe.add(join(p, "protocol"), r.Protocol, "is not one of tcp, udp, sctp, icmp, icmpv6")
	}
	if r.CIDR != "" {
		if _, err := netip.ParsePrefix(r.CIDR); err != nil {
			fe.add(join(p, "cidr"), r.CIDR, "is not an IP prefix")
		}
	}
	if len(r.Ports) > 0 && r.Protocol != "tcp" && r.Protocol != "udp" && r.Protocol != "sctp" {
		fe.add(join(p, "ports"), r.Ports, "need protocol tcp, udp or sctp")
	}
	for i, port := range r.Ports {
		if port < 1 || port > 65535 {
			fe.add(fmt.Sprintf("%s[%d]", join(p, "ports"), i), port, "is out of range 1-65535")
		}
	}
}
