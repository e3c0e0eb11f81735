package ipam

import (
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
)

// Allocate gives holder one address per subnet of the network: the
// requested static address of that family, or a free dynamic one. When the
// holder already holds addresses in this pool (a retried ADD), it gets them
// back unchanged, unless the request now names different static addresses.
func (t *Tx) Allocate(n *api.Network, holder Holder, static []netip.Prefix) ([]attach.IPConfig, error) {
	subnets := n.IPAM.ParsedSubnets()
	if len(subnets) == 0 {
		if len(static) > 0 {
			return nil, fmt.Errorf("network %s has no ipam subnets, so requested address %s cannot be honoured: %w",
				n.Key(), static[0], ErrInvalidRequest)
		}
		return nil, nil
	}
	p, err := t.pool(n.Key(), true)
	if err != nil {
		return nil, err
	}
	byFamily, err := matchStatic(n, subnets, static)
	if err != nil {
		return nil, err
	}
	prev := p.held(holder)
	if len(prev) > 0 && reuseMatches(prev, byFamily) {
		return configs(subnets, prev, byFamily), nil
	}
	if err := t.releasePool(p, holder); err != nil {
		return nil, err
	}
	addrs := make([]netip.Addr, 0, len(subnets))
	for i := range subnets {
		s := &subnets[i]
		var a netip.Addr
		if want, ok := byFamily[s.Prefix.Addr().Is4()]; ok {
			a, err = p.claimStatic(n.Key(), s, want, holder)
		} else {
			a, err = p.claimDynamic(n.Key(), s, holder, t.blocks)
		}
		if err != nil {
			return nil, err
		}
		addrs = append(addrs, a)
	}
	if err := p.setHeld(holder, addrs); err != nil {
		return nil, err
	}
	return configs(subnets, addrs, byFamily), nil
}

// matchStatic maps each requested address to its family after checking it
// fits one of the network's subnets.
func matchStatic(n *api.Network, subnets []api.ParsedSubnet, static []netip.Prefix) (map[bool]netip.Addr, error) {
	out := map[bool]netip.Addr{}
	for _, req := range static {
		var sub *api.ParsedSubnet
		for i := range subnets {
			if subnets[i].Prefix.Contains(req.Addr()) {
				sub = &subnets[i]
			}
		}
		switch {
		case sub == nil:
			return nil, fmt.Errorf("network %s: requested address %s is in none of its subnets (%s): %w",
				n.Key(), req, subnetList(subnets), ErrInvalidRequest)
		case req.Bits() != sub.Prefix.Bits():
			return nil, fmt.Errorf("network %s: requested address %s has prefix length /%d, subnet %s has /%d: %w",
				n.Key(), req, req.Bits(), sub.Prefix, sub.Prefix.Bits(), ErrInvalidRequest)
		}
		a := req.Addr()
		first, last := api.UsableRange(sub.Prefix)
		switch {
		case a.Less(first) || last.Less(a):
			return nil, fmt.Errorf("network %s: requested address %s is not a usable host address of %s: %w",
				n.Key(), a, sub.Prefix, ErrInvalidRequest)
		case a == sub.Gateway:
			return nil, fmt.Errorf("network %s: requested address %s is the subnet's gateway: %w", n.Key(), a, ErrInvalidRequest)
		case sub.Excluded(a):
			return nil, fmt.Errorf("network %s: requested address %s is excluded from %s: %w", n.Key(), a, sub.Prefix, ErrInvalidRequest)
		}
		out[a.Is4()] = a
	}
	return out, nil
}

func subnetList(subnets []api.ParsedSubnet) string {
	s := ""
	for i, sub := range subnets {
		if i > 0 {
			s += ", "
		}
		s += sub.Prefix.String()
	}
	return s
}

// reuseMatches reports whether previously held addresses satisfy the
// static requests (a retry that asks for the same thing).
func reuseMatches(prev []netip.Addr, want map[bool]netip.Addr) bool {
	for fam, a := range want {
		found := false
		for _, p := range prev {
			if p.Is4() == fam && p == a {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func configs(subnets []api.ParsedSubnet, addrs []netip.Addr, static map[bool]netip.Addr) []attach.IPConfig {
	out := make([]attach.IPConfig, 0, len(addrs))
	for _, a := range addrs {
		for _, s := range subnets {
			if s.Prefix.Contains(a) {
				out = append(out, attach.IPConfig{Address: netip.PrefixFrom(a, s.Prefix.Bits()), Gateway: s.Gateway, Static: static[a.Is4()] == a})
			}
		}
	}
	return out
}

func (p *poolBuckets) holderAt(a netip.Addr) (Holder, bool) {
	v := p.ips.Get(addrKey(a))
	if v == nil {
		return Holder{}, false
	}
	var h Holder
	_ = json.Unmarshal(v, &h) // a corrupt entry still counts as held
	return h, true
}

func (p *poolBuckets) claimStatic(network string, s *api.ParsedSubnet, a netip.Addr, holder Holder) (netip.Addr, error) {
	if h, held := p.holderAt(a); held && !h.same(holder) {
		return netip.Addr{}, &ConflictError{Network: network, Address: a.String(), Holder: h}
	}
	holder.Static = true
	return a, p.put(a, holder)
}

// claimDynamic takes the first free address of the range at or after the
// pool's hint, wrapping once. Starting after the last allocation (rather
// than at the range start) keeps a just-freed address out of use for as
// long as possible, so stale ARP/ND caches elsewhere do not misdirect.
func (p *poolBuckets) claimDynamic(network string, s *api.ParsedSubnet, holder Holder, blocks bool) (netip.Addr, error) {
	hintKey := []byte("hint6")
	if s.Prefix.Addr().Is4() {
		hintKey = []byte("hint4")
	}
	start := s.RangeStart
	var hint netip.Addr
	if h := p.meta.Get(hintKey); h != nil {
		if a, ok := netip.AddrFromSlice(h); ok {
			a = a.Unmap()
			if a.Is4() == start.Is4() && !a.Less(s.RangeStart) && a.Less(s.RangeEnd) {
				start, hint = a.Next(), a
			}
		}
	}
	if blocks {
		return p.claimInBlocks(network, s, holder, hintKey, hint)
	}
	a, ok := p.nextFree(s, start, s.RangeEnd)
	if !ok && start != s.RangeStart {
		a, ok = p.nextFree(s, s.RangeStart, start.Prev())
	}
	if !ok {
		return netip.Addr{}, fmt.Errorf("network %s: range %s-%s of %s is full: %w", network, s.RangeStart, s.RangeEnd, s.Prefix, ErrExhausted)
	}
	if err := p.meta.Put(hintKey, a.AsSlice()); err != nil {
		return netip.Addr{}, err
	}
	return a, p.put(a, holder)
}

// nextFree scans [from, to] for an address that is not the gateway, not
// excluded and not held. Excluded prefixes are skipped whole and held
// addresses are walked with a cursor, so the cost is bounded by the number
// of held addresses and exclusions, not by the size of the range.
func (p *poolBuckets) nextFree(s *api.ParsedSubnet, from, to netip.Addr) (netip.Addr, bool) {
	c := p.ips.Cursor()
	a := from
	for a.IsValid() && !to.Less(a) {
		if skip, ok := excludedUntil(s, a); ok {
			a = skip.Next()
			continue
		}
		if a == s.Gateway || p.foreign(a) {
			a = a.Next()
			continue
		}
		k, _ := c.Seek(addrKey(a))
		if k != nil && string(k) == string(addrKey(a)) {
			a = a.Next()
			continue
		}
		return a, true
	}
	return netip.Addr{}, false
}

// excludedUntil returns the last address of the exclusion covering a.
func excludedUntil(s *api.ParsedSubnet, a netip.Addr) (netip.Addr, bool) {
	for _, e := range s.Exclude {
		if e.Contains(a) {
			return api.LastAddr(e), true
		}
	}
	return netip.Addr{}, false
}

func addrKey(a netip.Addr) []byte {
	k := a.As16()
	return k[:]
}

func (p *poolBuckets) put(a netip.Addr, h Holder) error {
	v, err := json.Marshal(h)
	if err != nil {
		return err
	}
	return p.ips.Put(addrKey(a), v)
}

func (p *poolBuckets) held(h Holder) []netip.Addr {
	v := p.owners.Get(h.key())
	if v == nil {
		return nil
	}
	var addrs []netip.Addr
	_ = json.Unmarshal(v, &addrs)
	return addrs
}

func (p *poolBuckets) setHeld(h Holder, addrs []netip.Addr) error {
	if len(addrs) == 0 {
		return p.owners.Delete(h.key())
	}
	v, err := json.Marshal(addrs)
	if err != nil {
		return err
	}
	return p.owners.Put(h.key(), v)
}

// Release frees every address holder has in the network's pool and
// returns them. Releasing what is not held is not an error.
func (t *Tx) Release(network string, holder Holder) ([]netip.Addr, error) {
	p, err := t.pool(network, false)
	if err != nil || p == nil {
		return nil, err
	}
	addrs := p.held(holder)
	return addrs, t.releasePool(p, holder)
}

func (t *Tx) releasePool(p *poolBuckets, holder Holder) error {
	for _, a := range p.held(holder) {
		// Only delete what this holder really holds: a damaged owner index
		// must never free somebody else's address.
		if h, ok := p.holderAt(a); ok && h.same(holder) {
			if err := p.ips.Delete(addrKey(a)); err != nil {
				return fmt.Errorf("release %s: %w", a, err)
			}
		}
	}
	return p.owners.Delete(holder.key())
}

// Allocation is one held address (for listings, audits and GC).
type Allocation struct {
	Network string     `json:"network"`
	Address netip.Addr `json:"address"`
	Holder  Holder     `json:"holder"`
}

// Allocations lists every held address of every pool.
func (t *Tx) Allocations() []Allocation {
	var out []Allocation
	root := t.tx.Bucket(bucketPools)
	_ = root.ForEach(func(name, _ []byte) error {
		p, _ := t.pool(string(name), false)
		if p == nil {
			return nil
		}
		return p.ips.ForEach(func(k, v []byte) error {
			a, _ := netip.AddrFromSlice(k)
			var h Holder
			_ = json.Unmarshal(v, &h)
			out = append(out, Allocation{Network: string(name), Address: a.Unmap(), Holder: h})
			return nil
		})
	})
	return out
}
