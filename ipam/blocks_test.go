package ipam

import (
	"errors"
	"net/netip"
	"testing"
)

const blockNet = `{"name":"fh","path":"macvlan","master":"m0","ipam":{"subnets":[
	{"cidr":"10.0.0.0/24","rangeStart":"10.0.0.10","gateway":"10.0.0.1"}]}}`

// In block mode a dynamic address comes only from a block the node holds,
// never from an address another node reserved, and a full block asks for
// another one instead of reaching into the rest of the range.
func TestBlocksConfineDynamicAllocation(t *testing.T) {
	s := openStore(t)
	s.UseBlocks()
	n := network(t, blockNet)
	_, err := alloc(t, s, n, holder(0))
	var nb *NeedBlockError
	if !errors.As(err, &nb) || nb.Subnet != netip.MustParsePrefix("10.0.0.0/24") || !errors.Is(err, ErrNeedBlock) {
		t.Fatalf("allocation with no block: %v, want a NeedBlockError for 10.0.0.0/24", err)
	}
	// 10.0.0.8/29: .8 and .9 are below rangeStart, .12 is reserved by a
	// fixed-IP pod on another node: .10, .11, .13, .14, .15 remain.
	err = s.Update(func(tx *Tx) error {
		return tx.AddBlock(n.Key(), Block{Prefix: netip.MustParsePrefix("10.0.0.8/29"), Name: "b1"},
			map[netip.Addr]string{netip.MustParseAddr("10.0.0.12"): "ran/cu-9 on node-b"})
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i := 1; i <= 5; i++ {
		ips, err := alloc(t, s, n, holder(i))
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		if ips[0].Static {
			t.Errorf("a dynamic address is marked static: %+v", ips[0])
		}
		got = append(got, ips[0].Address.Addr().String())
	}
	want := []string{"10.0.0.10", "10.0.0.11", "10.0.0.13", "10.0.0.14", "10.0.0.15"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("addresses %v, want %v", got, want)
		}
	}
	if _, err := alloc(t, s, n, holder(6)); !errors.As(err, &nb) {
		t.Fatalf("allocation past the block: %v, want NeedBlockError", err)
	}
	// A fixed address outside the blocks is the cluster reservation's
	// business: locally it is taken as asked, and marked static.
	ips, err := alloc(t, s, n, holder(7), "10.0.0.200/24")
	if err != nil || !ips[0].Static {
		t.Fatalf("static outside the blocks: %+v %v", ips, err)
	}
	var blocks []Block
	_ = s.View(func(tx *Tx) error { blocks = tx.Blocks(n.Key()); return nil })
	if len(blocks) != 1 || blocks[0].Name != "b1" {
		t.Errorf("blocks %+v", blocks)
	}
	// The foreign pod went away: its address is ours to give.
	if err := s.Update(func(tx *Tx) error { return tx.ClearForeign(n.Key(), netip.MustParseAddr("10.0.0.12")) }); err != nil {
		t.Fatal(err)
	}
	if ips, err := alloc(t, s, n, holder(8)); err != nil || ips[0].Address.Addr() != netip.MustParseAddr("10.0.0.12") {
		t.Fatalf("after the foreign reservation went: %+v %v", ips, err)
	}
}
