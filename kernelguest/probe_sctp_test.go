package kernelguest_test

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/internal/sctptest"
	"github.com/telcni/telcni/kernelguest"
)

// An SCTP association between two netns over two paths: both ends see both of
// the other's addresses, and with the first path's link down, data still flows
// over the second.
func TestProbeSCTPMultihoming(t *testing.T) {
	kernelguest.Require(t)
	nsA, nsB := netnstest.New(t), netnstest.New(t)
	netnstest.Wire(t, nsA, nsB, "p1", "192.0.2.2/24")
	netnstest.Wire(t, nsA, nsB, "p2", "198.51.100.2/24")
	netnstest.AddrUp(t, nsA, "p1", "192.0.2.1/24")
	netnstest.AddrUp(t, nsA, "p2", "198.51.100.1/24")
	// Fast heartbeats and retransmissions, so that the second path is
	// confirmed (RFC 4960 path verification) within a moment, not 30 s.
	for _, ns := range []string{nsA, nsB} {
		if err := sctptest.FastFailover(ns); err != nil {
			t.Fatal(err)
		}
	}
	a := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1")}
	b := []netip.Addr{netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("198.51.100.2")}
	const port = 9899
	srv, err := sctptest.Listen(nsB, b, port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Close(srv) })
	start := time.Now()
	cli, err := sctptest.Dial(nsA, a, b, port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Close(cli) })
	conn, err := sctptest.Accept(srv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Close(conn) })
	t.Logf("association up in %s", time.Since(start).Round(time.Millisecond))
	for _, c := range []struct {
		side string
		fd   int
		want []netip.Addr
	}{{"client", cli, b}, {"server", conn, a}} {
		got, err := sctptest.PeerAddrs(c.fd)
		if err != nil {
			t.Fatalf("%s: %v", c.side, err)
		}
		if fmt.Sprint(sortedAddrs(got)) != fmt.Sprint(c.want) {
			t.Fatalf("%s sees peer addresses %v, want %v (multi-homed)", c.side, got, c.want)
		}
	}
	exchange(t, cli, conn, "over path 1")
	if err := sctptest.WaitPathActive(cli, b[1], port, 10*time.Second); err != nil {
		t.Fatalf("client: %v", err)
	}
	t.Logf("second path confirmed %s after association", time.Since(start).Round(time.Millisecond))

	// Cut path 1 and move the client's primary to path 2; the server's
	// primary stays on path 1 and fails over (FastFailover's timers).
	h := netnstest.Handle(t, nsA)
	p1, err := h.LinkByName("p1")
	if err != nil {
		t.Fatalf("find p1: %v", err)
	}
	if err := h.LinkSetDown(p1); err != nil {
		t.Fatalf("set p1 down: %v", err)
	}
	if err := sctptest.SetPrimary(cli, b[1], port); err != nil {
		t.Fatalf("client: %v", err)
	}
	// Path 1 is gone, so these can only go over path 2.
	exchange(t, cli, conn, "over path 2, client to server")
	exchange(t, conn, cli, "over path 2, server to client")
}

func exchange(t *testing.T, from, to int, msg string) {
	t.Helper()
	start := time.Now()
	if err := sctptest.Exchange(from, to, msg); err != nil {
		t.Fatal(err)
	}
	t.Logf("%q delivered in %s", msg, time.Since(start).Round(time.Millisecond))
}

func sortedAddrs(in []netip.Addr) []netip.Addr {
	out := slices.Clone(in)
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}
