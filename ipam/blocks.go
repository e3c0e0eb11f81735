package ipam

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/telcni/telcni/api"
	bolt "go.etcd.io/bbolt"
)

// In a cluster, dynamic addresses come from blocks: pieces of a network's
// dynamic range that a node claimed cluster-wide (kube.IPAM). The node
// records its blocks here, and allocates inside them with no further API
// call; addresses of its blocks that other nodes reserved for fixed-IP pods
// are recorded as foreign and never handed out.

var (
	subBlocks  = []byte("blocks")  // block prefix (text) -> Block JSON
	subForeign = []byte("foreign") // addr (16 bytes) -> who reserved it (text)
)

// ErrNeedBlock is wrapped by the error of a dynamic request on a store in
// block mode when no block the node holds has a free address: the caller
// claims a block (NeedBlockError says for which subnet) and retries.
var ErrNeedBlock = errors.New("no block with a free address")

// NeedBlockError names the subnet that needs another block.
type NeedBlockError struct {
	Network string
	Subnet  netip.Prefix
	// Held is how many blocks of Subnet the node held when it found them
	// full: a concurrent ADD that claimed one meanwhile makes it stale.
	Held int
}

func (e *NeedBlockError) Error() string {
	return fmt.Sprintf("network %s: no block of %s held by this node has a free address", e.Network, e.Subnet)
}

func (e *NeedBlockError) Unwrap() error { return ErrNeedBlock }

// Block is one block a node holds.
type Block struct {
	Prefix netip.Prefix `json:"prefix"`
	Name   string       `json:"name"` // the cluster object's name
}

// UseBlocks switches dynamic allocation to the blocks recorded with
// AddBlock (cluster mode). Call it before serving.
func (s *Store) UseBlocks() { s.blocks = true }

// AddBlock records a block the node now holds, with the addresses in it
// that fixed-IP pods elsewhere hold (they are never handed out here).
func (t *Tx) AddBlock(network string, b Block, foreign map[netip.Addr]string) error {
	bb, err := t.poolSub(network, subBlocks)
	if err != nil {
		return err
	}
	v, _ := json.Marshal(b)
	if err := bb.Put([]byte(b.Prefix.String()), v); err != nil {
		return fmt.Errorf("record block %s: %w", b.Prefix, err)
	}
	for a, who := range foreign {
		if err := t.SetForeign(network, a, who); err != nil {
			return err
		}
	}
	return nil
}

// BlocksIn counts the blocks the node holds inside subnet of network.
func (t *Tx) BlocksIn(network string, subnet netip.Prefix) int {
	n := 0
	for _, b := range t.Blocks(network) {
		if subnet.Overlaps(b.Prefix) {
			n++
		}
	}
	return n
}

// Blocks lists the blocks the node holds for network.
func (t *Tx) Blocks(network string) []Block {
	p, _ := t.pool(network, false)
	if p == nil {
		return nil
	}
	bb := p.b.Bucket(subBlocks)
	if bb == nil {
		return nil
	}
	var out []Block
	_ = bb.ForEach(func(_, v []byte) error {
		var b Block
		if json.Unmarshal(v, &b) == nil {
			out = append(out, b)
		}
		return nil
	})
	slices.SortFunc(out, func(x, y Block) int { return x.Prefix.Addr().Compare(y.Prefix.Addr()) })
	return out
}

// SetForeign marks a as reserved by another node's pod (who says whose).
func (t *Tx) SetForeign(network string, a netip.Addr, who string) error {
	fb, err := t.poolSub(network, subForeign)
	if err != nil {
		return err
	}
	return fb.Put(addrKey(a), []byte(who))
}

// ClearForeign forgets a foreign reservation (its pod went away).
func (t *Tx) ClearForeign(network string, a netip.Addr) error {
	p, err := t.pool(network, false)
	if err != nil || p == nil {
		return err
	}
	if fb := p.b.Bucket(subForeign); fb != nil {
		return fb.Delete(addrKey(a))
	}
	return nil
}

// poolSub returns the bucket name of network's pool, creating both.
func (t *Tx) poolSub(network string, name []byte) (*bolt.Bucket, error) {
	p, err := t.pool(network, true)
	if err != nil {
		return nil, err
	}
	b, err := p.b.CreateBucketIfNotExists(name)
	if err != nil {
		return nil, fmt.Errorf("create %s bucket of pool %s: %w", name, network, err)
	}
	return b, nil
}

func (p *poolBuckets) foreign(a netip.Addr) bool {
	fb := p.b.Bucket(subForeign)
	return fb != nil && fb.Get(addrKey(a)) != nil
}

// blockRanges are the parts of s's dynamic range inside the node's blocks,
// in address order.
func (p *poolBuckets) blockRanges(s *api.ParsedSubnet) [][2]netip.Addr {
	bb := p.b.Bucket(subBlocks)
	if bb == nil {
		return nil
	}
	var out [][2]netip.Addr
	_ = bb.ForEach(func(_, v []byte) error {
		var b Block
		if json.Unmarshal(v, &b) != nil || !s.Prefix.Overlaps(b.Prefix) || b.Prefix.Addr().Is4() != s.Prefix.Addr().Is4() {
			return nil
		}
		lo, hi := b.Prefix.Addr(), api.LastAddr(b.Prefix)
		if lo.Less(s.RangeStart) {
			lo = s.RangeStart
		}
		if s.RangeEnd.Less(hi) {
			hi = s.RangeEnd
		}
		if !hi.Less(lo) {
			out = append(out, [2]netip.Addr{lo, hi})
		}
		return nil
	})
	slices.SortFunc(out, func(x, y [2]netip.Addr) int { return x[0].Compare(y[0]) })
	return out
}

// claimInBlocks is claimDynamic for block mode: the first free address
// after the hint within the node's blocks, wrapping once.
func (p *poolBuckets) claimInBlocks(network string, s *api.ParsedSubnet, holder Holder, hintKey []byte, hint netip.Addr) (netip.Addr, error) {
	ranges := p.blockRanges(s)
	try := func(from, to netip.Addr) (netip.Addr, bool) {
		for _, r := range ranges {
			lo, hi := r[0], r[1]
			if lo.Less(from) {
				lo = from
			}
			if to.Less(hi) {
				hi = to
			}
			if hi.Less(lo) {
				continue
			}
			if a, ok := p.nextFree(s, lo, hi); ok {
				return a, true
			}
		}
		return netip.Addr{}, false
	}
	start := s.RangeStart
	if hint.IsValid() {
		start = hint.Next()
	}
	a, ok := try(start, s.RangeEnd)
	if !ok && start != s.RangeStart {
		a, ok = try(s.RangeStart, start.Prev())
	}
	if !ok {
		return netip.Addr{}, &NeedBlockError{Network: network, Subnet: s.Prefix, Held: len(ranges)}
	}
	if err := p.meta.Put(hintKey, a.AsSlice()); err != nil {
		return netip.Addr{}, err
	}
	return a, p.put(a, holder)
}

// SyncForeign makes the foreign addresses recorded inside block exactly
// want (address -> who reserved it).
func (t *Tx) SyncForeign(network string, block netip.Prefix, want map[netip.Addr]string) error {
	fb, err := t.poolSub(network, subForeign)
	if err != nil {
		return err
	}
	var stale [][]byte
	_ = fb.ForEach(func(k, _ []byte) error {
		a, ok := netip.AddrFromSlice(k)
		if a = a.Unmap(); ok && block.Contains(a) {
			if _, keep := want[a]; !keep {
				stale = append(stale, append([]byte(nil), k...))
			}
		}
		return nil
	})
	for _, k := range stale {
		if err := fb.Delete(k); err != nil {
			return err
		}
	}
	for a, who := range want {
		if err := fb.Put(addrKey(a), []byte(who)); err != nil {
			return err
		}
	}
	return nil
}
