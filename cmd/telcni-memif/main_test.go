package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/telcni/telcni/memif"
)

var (
	peerMAC = [6]byte{0x02, 0xaa, 0, 0, 0, 1}
	ourMAC  = [6]byte{0x02, 0xfe, 0, 0, 0, 1}
	peerIP  = netip.MustParseAddr("10.1.0.1")
	ourIP   = netip.MustParseAddr("10.1.0.2")
)

// testARP is the peer's ARP request for target.
func testARP(target netip.Addr) []byte {
	return arpRequest(make([]byte, 42), peerMAC, peerIP, target)
}

// testEcho is the peer's echo request to dst, a bare IPv4 packet.
func testEcho(dst netip.Addr, payload int) []byte {
	return echoRequest(make([]byte, 28+payload), true, peerMAC, ourMAC, peerIP, dst, 0x1234, 7, payload)
}

func ethernet(p []byte) []byte {
	f := make([]byte, 14+len(p))
	copy(f[0:6], ourMAC[:])
	copy(f[6:12], peerMAC[:])
	binary.BigEndian.PutUint16(f[12:], etherTypeIP)
	copy(f[14:], p)
	return f
}

func TestRespond(t *testing.T) {
	out := make([]byte, 2000)
	r := respond(testARP(ourIP), out, false, ourMAC, ourIP)
	if r == nil || binary.BigEndian.Uint16(r[14+6:]) != 2 || !bytes.Equal(r[0:6], peerMAC[:]) || !bytes.Equal(r[14+8:14+14], ourMAC[:]) {
		t.Fatalf("ARP reply %x", r)
	}
	if respond(testARP(peerIP), out, false, ourMAC, ourIP) != nil {
		t.Fatal("answered ARP for someone else")
	}
	req := testEcho(ourIP, 56)
	r = respond(ethernet(req), out, false, ourMAC, ourIP)
	if r == nil {
		t.Fatal("no echo reply")
	}
	ipr := r[14:]
	if ipr[20] != 0 || checksum(ipr[:20]) != 0 || checksum(ipr[20:]) != 0 || !bytes.Equal(ipr[16:20], req[12:16]) || !bytes.Equal(ipr[28:], req[28:]) {
		t.Fatalf("bad echo reply %x", r)
	}
	if r := respond(req, out, true, ourMAC, ourIP); r == nil || r[20] != 0 {
		t.Fatalf("ip mode echo reply %x", r)
	}
	bad := testEcho(ourIP, 10)
	bad[30] ^= 1 // corrupt the payload: checksum fails
	if respond(bad, out, true, ourMAC, ourIP) != nil {
		t.Fatal("answered a corrupt echo request")
	}
	for n := 0; n < 60; n++ { // truncated input never panics
		respond(ethernet(req)[:n], out, false, ourMAC, ourIP)
		respond(req[:min(n, len(req))], out[:n], true, ourMAC, ourIP)
	}
}

// peer is a Go memif server standing in for VPP.
func peer(t *testing.T, mode memif.Mode) (string, *memif.Listener) {
	sock := filepath.Join(t.TempDir(), "m.sock")
	l, err := memif.Listen(memif.Config{Socket: sock, Mode: mode})
	if err != nil {
		t.Skipf("cannot listen on a memif socket: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return sock, l
}

func TestResponderOverMemif(t *testing.T) {
	sock, l := peer(t, memif.Ethernet)
	o, err := parseFlags("respond", []string{"-socket", sock, "-ip", ourIP.String(), "-mac", "02:fe:00:00:00:01"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- serve(ctx, "respond", o) }()
	c, err := l.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	reqs := [][]byte{testARP(ourIP), ethernet(testEcho(ourIP, 56)), ethernet(testEcho(ourIP, 3000)), testARP(peerIP)}
	// The responder may not have handed its buffers over yet: retry.
	for sent := 0; sent < len(reqs); {
		n, err := c.TxBurst(0, reqs[sent:])
		if err != nil || ctx.Err() != nil {
			t.Fatal(sent, err, ctx.Err())
		}
		sent += n
		time.Sleep(time.Millisecond)
	}
	bufs := [][]byte{make([]byte, 9000), make([]byte, 9000), make([]byte, 9000), make([]byte, 9000)}
	var got [][]byte
	for len(got) < 3 && ctx.Err() == nil {
		n, err := c.RxBurst(0, bufs)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			got = append(got, append([]byte(nil), bufs[i]...))
			bufs[i] = bufs[i][:cap(bufs[i])]
		}
		time.Sleep(time.Millisecond)
	}
	if len(got) != 3 {
		t.Fatalf("%d replies, want 3", len(got))
	}
	if binary.BigEndian.Uint16(got[0][12:]) != etherTypeARP || len(got[1]) != 14+84 || len(got[2]) != 14+3028 || got[2][14+20] != 0 {
		t.Fatalf("replies: %x / %d / %d bytes", got[0], len(got[1]), len(got[2]))
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestGeneratorOverMemif(t *testing.T) {
	sock, l := peer(t, memif.IP)
	o, err := parseFlags("gen", []string{"-socket", sock, "-mode", "ip", "-count", "5000", "-size", "100", "-flows", "7", "-rate", "200000"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- serve(ctx, "gen", o) }()
	c, err := l.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	ports := map[uint16]int{}
	total := 0
	start := time.Now()
	for total < 5000 && ctx.Err() == nil {
		n, err := c.RxBurst(0, bufs)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			if len(bufs[i]) != 100 || checksum(bufs[i][:20]) != 0 {
				t.Fatalf("bad packet %x", bufs[i])
			}
			ports[binary.BigEndian.Uint16(bufs[i][20:])]++
			bufs[i] = bufs[i][:cap(bufs[i])]
		}
		total += n
	}
	elapsed := time.Since(start)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if n, _ := c.RxBurst(0, bufs); total != 5000 || n != 0 {
		t.Fatalf("received %d (+%d late), want exactly 5000", total, n)
	}
	if len(ports) != 7 {
		t.Fatalf("%d flows, want 7: %v", len(ports), ports)
	}
	// 5000 packets at 200 kpps take 25 ms; a generator ignoring -rate
	// would be done in well under a millisecond of sending.
	if elapsed < 20*time.Millisecond {
		t.Fatalf("5000 packets at 200000 pps arrived in %v", elapsed)
	}
}

// The pinger resolves its next hop, pings through the memif and answers
// the peer's ARP for its own address; a silent peer fails it.
func TestPingOverMemif(t *testing.T) {
	sock, l := peer(t, memif.Ethernet)
	o, err := parseFlags("ping", []string{"-socket", sock, "-ip", ourIP.String(), "-dst", peerIP.String(), "-count", "3"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- serve(ctx, "ping", o) }()
	c, err := l.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The peer answers as VPP would, and asks for the pinger's MAC once.
	asked, answeredUs := false, false
	bufs := [][]byte{make([]byte, 2048)}
	out := make([]byte, 2048)
	for ctx.Err() == nil && !answeredUs {
		select {
		case err := <-errc:
			t.Fatalf("ping ended before answering the peer's ARP: %v", err)
		default:
		}
		if !asked {
			if n, _ := c.TxBurst(0, [][]byte{testARP(ourIP)}); n == 1 {
				asked = true
			}
		}
		n, err := c.RxBurst(0, bufs)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			var mac [6]byte
			if arpReplyFrom(bufs[0], ourIP, &mac) {
				answeredUs = mac == ourMAC
			} else if r := respond(bufs[0], out, false, peerMAC, peerIP); r != nil {
				for m := 0; m == 0; m, _ = c.TxBurst(0, [][]byte{r}) {
				}
			}
			bufs[0] = bufs[0][:cap(bufs[0])]
		}
		time.Sleep(100 * time.Microsecond)
	}
	// Go on answering until the pinger is done.
	go func() {
		for ctx.Err() == nil {
			n, err := c.RxBurst(0, bufs)
			if err != nil {
				return
			}
			for i := 0; i < n; i++ {
				if r := respond(bufs[0], out, false, peerMAC, peerIP); r != nil {
					_, _ = c.TxBurst(0, [][]byte{r})
				}
				bufs[0] = bufs[0][:cap(bufs[0])]
			}
			time.Sleep(100 * time.Microsecond)
		}
	}()
	if err := <-errc; err != nil {
		t.Fatalf("ping through an answering peer: %v", err)
	}
	cancel()

	// A peer that never answers: the pinger reports what it lacked.
	sock2, l2 := peer(t, memif.Ethernet)
	o2, err := parseFlags("ping", []string{"-socket", sock2, "-ip", ourIP.String(), "-dst", peerIP.String(), "-count", "1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel2()
	go func() { _, _ = l2.Accept(ctx2) }()
	if err := serve(ctx2, "ping", o2); err == nil || !strings.Contains(err.Error(), "no ARP reply for next hop 10.1.0.1") {
		t.Fatalf("ping with a silent peer: %v", err)
	}
}
