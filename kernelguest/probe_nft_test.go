package kernelguest_test

import (
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/kernelguest"
)

// An nftables rule in the receiver's netns drops one UDP flow: the other port
// still echoes, the dropped one does not, and the rule's counter saw the drops.
func TestProbeNftablesDrop(t *testing.T) {
	kernelguest.Require(t)
	nsA, nsB := netnstest.New(t), netnstest.New(t)
	netnstest.Wire(t, nsA, nsB, "n", "192.0.2.2/24")
	netnstest.AddrUp(t, nsA, "n", "192.0.2.1/24")

	c, err := nftables.New(nftables.WithNetNSFd(netnstest.Fd(t, nsB)))
	if err != nil {
		t.Fatalf("nftables conn: %v", err)
	}
	table := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "kgprobe"})
	policy := nftables.ChainPolicyAccept
	chain := c.AddChain(&nftables.Chain{
		Name: "input", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &policy,
	})
	// meta l4proto udp udp dport 7001 counter drop
	c.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(7001)},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	if err := c.Flush(); err != nil {
		t.Fatalf("install the drop rule: %v", err)
	}

	if err := udpEcho(nsA, nsB, "192.0.2.2:7000", 5*time.Second); err != nil {
		t.Fatalf("port 7000 must pass the filter: %v", err)
	}
	if err := udpEcho(nsA, nsB, "192.0.2.2:7001", time.Second); err == nil {
		t.Fatal("port 7001 echoed: the drop rule did not drop")
	}
	rules, err := c.GetRules(table, chain)
	if err != nil {
		t.Fatalf("read rules back: %v", err)
	}
	if len(rules) != 1 {
		t.Fatalf("chain has %d rules, want 1", len(rules))
	}
	var dropped uint64
	for _, e := range rules[0].Exprs {
		if ctr, ok := e.(*expr.Counter); ok {
			dropped = ctr.Packets
		}
	}
	if dropped == 0 {
		t.Fatal("the drop rule's counter is 0: the flow was lost some other way")
	}
	t.Logf("drop rule matched %d packets", dropped)
}
