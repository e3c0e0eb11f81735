package policy

import "net/netip"

// subtract removes ex from every prefix of in: a prefix inside ex goes, a
// prefix containing ex is split into the halves that do not hold it, down
// to ex's length (at most 32 or 128 prefixes per exception). The result
// is a set of disjoint prefixes every path can match without an "except"
// of its own.
func subtract(in []netip.Prefix, ex netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range in {
		switch {
		case p.Addr().Is4() != ex.Addr().Is4() || !p.Overlaps(ex):
			out = append(out, p)
		case ex.Bits() <= p.Bits():
			// p lies inside ex: all of it is excepted.
		default:
			out = append(out, split(p, ex)...)
		}
	}
	return out
}

// split returns p without ex, ex strictly inside p.
func split(p, ex netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for p.Bits() < ex.Bits() {
		lo, hi := halves(p)
		if hi.Contains(ex.Addr()) {
			out = append(out, lo)
			p = hi
		} else {
			out = append(out, hi)
			p = lo
		}
	}
	return out
}

// halves splits p into its two prefixes one bit longer.
func halves(p netip.Prefix) (lo, hi netip.Prefix) {
	bits := p.Bits() + 1
	lo = netip.PrefixFrom(p.Addr(), bits)
	b := p.Addr().AsSlice()
	b[p.Bits()/8] |= 1 << (7 - uint(p.Bits()%8))
	a, _ := netip.AddrFromSlice(b)
	if p.Addr().Is4() {
		a = a.Unmap()
	}
	return lo, netip.PrefixFrom(a, bits)
}
