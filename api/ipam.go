package api

import (
	"fmt"
	"net/netip"
)

func (m *IPAM) validate(fe *fieldErrors, p string) {
	var families [2]bool
	for i := range m.Subnets {
		sp := fmt.Sprintf("%s[%d]", join(p, "subnets"), i)
		s, ok := m.Subnets[i].parse(fe, sp)
		if !ok {
			continue
		}
		fam := 0
		if s.Prefix.Addr().Is6() {
			fam = 1
		}
		if families[fam] {
			fe.add(join(sp, "cidr"), m.Subnets[i].CIDR, "is a second subnet of the same IP family (one IPv4 and one IPv6 subnet per network)")
		}
		families[fam] = true
	}
	for i := range m.Routes {
		m.Routes[i].parse(fe, fmt.Sprintf("%s[%d]", join(p, "routes"), i))
	}
}

// ParsedSubnets returns the subnets in netip form. Call it on a network that
// passed Validate; an invalid subnet is skipped.
func (m *IPAM) ParsedSubnets() []ParsedSubnet {
	var fe fieldErrors
	out := make([]ParsedSubnet, 0, len(m.Subnets))
	for i := range m.Subnets {
		if s, ok := m.Subnets[i].parse(&fe, ""); ok {
			out = append(out, s)
		}
	}
	return out
}

// ParsedRoutes returns the routes in netip form (see ParsedSubnets).
func (m *IPAM) ParsedRoutes() []ParsedRoute {
	var fe fieldErrors
	out := make([]ParsedRoute, 0, len(m.Routes))
	for i := range m.Routes {
		if r, ok := m.Routes[i].parse(&fe, ""); ok {
			out = append(out, r)
		}
	}
	return out
}

func (s *Subnet) parse(fe *fieldErrors, p string) (ParsedSubnet, bool) {
	var out ParsedSubnet
	n := len(fe.errs)
	pfx, err := netip.ParsePrefix(s.CIDR)
	if err != nil {
		fe.add(join(p, "cidr"), s.CIDR, "is not an IP prefix")
		return out, false
	}
	if pfx != pfx.Masked() {
		fe.add(join(p, "cidr"), s.CIDR, "has host bits set (did you mean %s?)", pfx.Masked())
		return out, false
	}
	out.Prefix = pfx
	first, last := UsableRange(pfx)
	if !first.IsValid() {
		fe.add(join(p, "cidr"), s.CIDR, "has no usable host addresses")
		return out, false
	}
	addr := func(field, v string) netip.Addr {
		if v == "" {
			return netip.Addr{}
		}
		a, err := netip.ParseAddr(v)
		if err != nil {
			fe.add(join(p, field), v, "is not an IP address")
			return netip.Addr{}
		}
		if !pfx.Contains(a) {
			fe.add(join(p, field), v, "is not inside cidr %s", pfx)
			return netip.Addr{}
		}
		return a
	}
	out.RangeStart, out.RangeEnd = first, last
	if a := addr("rangeStart", s.RangeStart); a.IsValid() {
		out.RangeStart = a
	}
	if a := addr("rangeEnd", s.RangeEnd); a.IsValid() {
		out.RangeEnd = a
	}
	if out.RangeEnd.Less(out.RangeStart) {
		fe.add(join(p, "rangeEnd"), out.RangeEnd.String(), "is before rangeStart %s", out.RangeStart)
	}
	out.Gateway = addr("gateway", s.Gateway)
	for i, e := range s.Exclude {
		ep := fmt.Sprintf("%s[%d]", join(p, "exclude"), i)
		ex, err := netip.ParsePrefix(e)
		if err != nil {
			a, aerr := netip.ParseAddr(e)
			if aerr != nil {
				fe.add(ep, e, "is not an IP address or prefix")
				continue
			}
			ex = netip.PrefixFrom(a, a.BitLen())
		}
		if !pfx.Overlaps(ex) {
			fe.add(ep, e, "is not inside cidr %s", pfx)
			continue
		}
		out.Exclude = append(out.Exclude, ex.Masked())
	}
	return out, len(fe.errs) == n
}

// UsableRange is the first and last host address of a prefix: IPv4 skips
// the network and broadcast addresses (except /31 and /32), IPv6 skips the
// subnet-router anycast address.
func UsableRange(p netip.Prefix) (first, last netip.Addr) {
	base := p.Masked().Addr()
	last = LastAddr(p)
	bits := p.Addr().BitLen() - p.Bits()
	switch {
	case base.Is4() && bits <= 1:
		return base, last
	case bits == 0:
		return base, last
	case base.Is4():
		return base.Next(), last.Prev()
	default:
		return base.Next(), last
	}
}

// LastAddr is the highest address of a prefix.
func LastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As16()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	for i := bits; i < 128; i++ {
		a[i/8] |= 1 << (7 - uint(i%8))
	}
	out := netip.AddrFrom16(a)
	if p.Addr().Is4() {
		return out.Unmap()
	}
	return out
}

// Excluded reports whether a is in one of the subnet's exclusions.
func (s *ParsedSubnet) Excluded(a netip.Addr) bool {
	for _, e := range s.Exclude {
		if e.Contains(a) {
			return true
		}
	}
	return false
}

func (r *Route) parse(fe *fieldErrors, p string) (ParsedRoute, bool) {
	var out ParsedRoute
	dst, err := netip.ParsePrefix(r.Dst)
	if err != nil {
		fe.add(join(p, "dst"), r.Dst, "is not an IP prefix")
		return out, false
	}
	out.Dst = dst.Masked()
	if r.GW != "" {
		gw, err := netip.ParseAddr(r.GW)
		if err != nil {
			fe.add(join(p, "gw"), r.GW, "is not an IP address")
			return out, false
		}
		if gw.Is4() != dst.Addr().Is4() {
			fe.add(join(p, "gw"), r.GW, "is not of the same IP family as dst %s", r.Dst)
			return out, false
		}
		out.GW = gw
	}
	return out, true
}
