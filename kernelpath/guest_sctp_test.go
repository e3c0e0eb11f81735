package kernelpath

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/internal/sctptest"
	"github.com/telcni/telcni/kernelguest"
)

// TestGuestSCTPMultihomingSurvivesPathLoss is why telco pods want several
// interfaces: a pod with two telcni interfaces on two networks holds one
// SCTP association over both; when the first path's cable goes dead the
// association carries on over the second.
func TestGuestSCTPMultihomingSurvivesPathLoss(t *testing.T) {
	kernelguest.Require(t)
	node, remote, pod := netnstest.New(t), netnstest.New(t), netnstest.New(t)
	netnstest.Wire(t, node, remote, "up0", "10.91.0.1/24")
	netnstest.Wire(t, node, remote, "up1", "10.92.0.1/24")
	p := newPath(t, node)
	ctx := context.Background()
	for i, n := range []string{
		`{"name":"sig-a","path":"macvlan","master":"up0","ipam":{"subnets":[{"cidr":"10.91.0.0/24"}]}}`,
		`{"name":"sig-b","path":"macvlan","master":"up1","ipam":{"subnets":[{"cidr":"10.92.0.0/24"}]}}`,
	} {
		req := &attach.Request{ContainerID: "sctp", Netns: pod, IfName: fmt.Sprintf("sig%d", i), Network: mustNet(t, n),
			IPs: []attach.IPConfig{{Address: netip.MustParsePrefix(fmt.Sprintf("10.9%d.0.10/24", i+1))}}}
		if _, err := p.Attach(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	for _, ns := range []string{pod, remote} {
		if err := sctptest.FastFailover(ns); err != nil {
			t.Fatal(err)
		}
	}
	addrs := func(a, b string) []netip.Addr { return []netip.Addr{netip.MustParseAddr(a), netip.MustParseAddr(b)} }
	l, err := sctptest.Listen(remote, addrs("10.91.0.1", "10.92.0.1"), 3868) // Diameter's port
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(l)
	c, err := sctptest.Dial(pod, addrs("10.91.0.10", "10.92.0.10"), addrs("10.91.0.1", "10.92.0.1"), 3868)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(c)
	s, err := sctptest.Accept(l)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(s)
	peers, err := sctptest.PeerAddrs(s)
	if err != nil || len(peers) != 2 {
		t.Fatalf("server sees peer addresses %v (%v), want both pod interfaces", peers, err)
	}
	if err := sctptest.Exchange(c, s, "CER over two paths"); err != nil {
		t.Fatal(err)
	}
	// Cut path A on the remote side, as a failed switch port would.
	rh := netnstest.Handle(t, remote)
	cable, _ := rh.LinkByName("up0p")
	if err := rh.LinkSetDown(cable); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := 0; i < 5; i++ {
		msg := fmt.Sprintf("DWR %d after path A died", i)
		if err := sctptest.Exchange(c, s, msg); err != nil {
			t.Fatalf("association lost with path A down: %v", err)
		}
		if err := sctptest.Exchange(s, c, "DWA"); err != nil {
			t.Fatalf("reply lost with path A down: %v", err)
		}
	}
	t.Logf("association carried 10 messages over path B in %v after path A died", time.Since(start).Round(time.Millisecond))
}
