package vppagent

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/telcni/telcni/memif"
	"github.com/telcni/telcni/vppagent/vpptest"
)

// BenchmarkVPPMemif measures pod -> VPP -> pod packet rate over memif, in
// an L2 bridge domain and routed (L3, memif mode ip), at 64 and 1500 bytes,
// next to a direct Go memif pair (no VPP) in the same run. The generator
// and sink are the Go memif endpoint; VPP runs its main loop only (no
// workers), polling. Figures are Mpps received by the sink; the "direct"
// rows are the baseline to compare against on this machine.
func BenchmarkVPPMemif(b *testing.B) {
	v := vpptest.Start(b, vpptest.Options{Busy: true})
	a := startAgent(b, v, nil, shortTemp(b))
	ctx := context.Background()
	l2 := Network{Name: "bench-l2", Kind: KindMemif, Memif: MemifOptions{RingSize: 1024}}
	l3 := Network{Name: "bench-l3", Kind: KindMemif, L3: true, Memif: MemifOptions{Mode: MemifModeIP, RingSize: 1024}}
	gw := []netip.Addr{netip.MustParseAddr("10.80.0.1")}
	add := func(cid, ifn string, n Network, ip string) *Record {
		r, err := a.m.Add(ctx, PodInterface{ContainerID: cid, IfName: ifn, Netns: newNetns(b), Network: n, IPs: []netip.Prefix{pfx(ip)}, Gateways: gw})
		if err != nil {
			b.Fatal(err)
		}
		return r
	}
	l2tx, l2rx := dialRec(b, add(cidA, "b2", l2, "10.80.0.5/24")), dialRec(b, add(cidB, "b2", l2, "10.80.0.6/24"))
	l3tx, l3rx := dialRec(b, add(cidA, "b3", l3, "10.80.0.7/24")), dialRec(b, add(cidB, "b3", l3, "10.80.0.8/24"))
	dtx, drx := directPair(b)

	for _, size := range []int{64, 1500} {
		eth := ethUDPFrame(size, "02:00:00:00:80:05", "02:00:00:00:80:06", "10.80.0.5", "10.80.0.6")
		ip := eth[14:]
		binary.BigEndian.PutUint32(ip[12:16], 0x0a500007) // 10.80.0.7 -> 10.80.0.8
		binary.BigEndian.PutUint32(ip[16:20], 0x0a500008)
		binary.BigEndian.PutUint16(ip[10:12], 0)
		binary.BigEndian.PutUint16(ip[10:12], checksum(ip[:20]))
		sz := itoa(uint32(size))
		b.Run("direct/"+sz, func(b *testing.B) { blast(b, dtx, drx, eth) })
		b.Run("l2/"+sz, func(b *testing.B) { blast(b, l2tx, l2rx, eth) })
		b.Run("l3/"+sz, func(b *testing.B) { blast(b, l3tx, l3rx, ip) })
	}
	if testing.Verbose() {
		for _, c := range []string{"show interface", "show errors", "show interface rx-placement", "show runtime"} {
			b.Logf("%s:\n%s", c, v.MustCLI(c))
		}
	}
}

func dialRec(b *testing.B, r *Record) *memif.Conn {
	b.Helper()
	mi := r.DeviceInfo.Memif
	mode := memif.Ethernet
	if mi.Mode == MemifModeIP {
		mode = memif.IP
	}
	cfg := memif.Config{Socket: mi.Path, ID: mi.ID, Mode: mode, Name: r.Spec.IfName}
	if strings.HasPrefix(mi.Path, "abstract:") {
		cfg.Netns = r.Spec.Netns
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := memif.Dial(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

func directPair(b *testing.B) (tx, rx *memif.Conn) {
	b.Helper()
	sock := filepath.Join(shortTemp(b), "d.sock")
	l, err := memif.Listen(memif.Config{Socket: sock})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tx, err = memif.Dial(ctx, memif.Config{Socket: sock})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tx.Close() })
	rx, err = l.Accept(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rx.Close() })
	return tx, rx
}

// window is the most frames in flight: half a 1024-slot ring.
const window = 512

// blast sends b.N copies of frame from tx and counts what reaches rx, in
// one goroutine: the machine has two shared cores and VPP's main loop
// polls on one, so a separate sink thread would measure the scheduler.
// The loop is closed (at most window frames in flight), so the rate is
// what the path sustains without overrunning the sink's ring (VPP drops
// on a full ring, a direct pair blocks). It reports received Mpps and the
// share lost.
func blast(b *testing.B, tx, rx *memif.Conn, frame []byte) {
	drainRx(rx)
	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	burst := make([][]byte, 32)
	for i := range burst {
		burst[i] = frame
	}
	b.SetBytes(int64(len(frame)))
	b.ResetTimer()
	start := time.Now()
	var sent, got, lost int
	idleSince := time.Time{}
	for got+lost < b.N {
		if sent < b.N && sent-got-lost < window {
			n, err := tx.TxBurst(0, burst[:min(len(burst), b.N-sent)])
			if err != nil {
				b.Fatal(err)
			}
			sent += n
		}
		n, err := rx.RxBurst(0, bufs)
		if err != nil {
			b.Fatal(err)
		}
		got += n
		for i := range bufs[:n] {
			bufs[i] = bufs[i][:cap(bufs[i])]
		}
		switch {
		case n > 0 || sent < b.N && sent-got-lost < window:
			idleSince = time.Time{}
		case idleSince.IsZero():
			idleSince = time.Now()
		case time.Since(idleSince) > 200*time.Millisecond:
			// What is in flight was lost (VPP dropped it): count it and
			// go on, or stop once everything was sent.
			lost = sent - got
			idleSince = time.Time{}
			if sent >= b.N {
				goto done
			}
		}
	}
done:
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(got)/el.Seconds()/1e6, "Mpps")
	b.ReportMetric(100*float64(b.N-got)/float64(b.N), "loss%")
}

func drainRx(c *memif.Conn) {
	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	for {
		n, _ := c.RxBurst(0, bufs)
		if n == 0 {
			return
		}
		for i := range bufs[:n] {
			bufs[i] = bufs[i][:cap(bufs[i])]
		}
	}
}

// ethUDPFrame is an Ethernet/IPv4/UDP frame of size bytes (no FCS).
func ethUDPFrame(size int, src, dst, sip, dip string) []byte {
	f := make([]byte, size)
	copy(f[0:6], mustMAC(dst))
	copy(f[6:12], mustMAC(src))
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(size-14))
	ip[8], ip[9] = 64, 17
	s4, d4 := netip.MustParseAddr(sip).As4(), netip.MustParseAddr(dip).As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(ip[:20]))
	udp := ip[20:]
	binary.BigEndian.PutUint16(udp[0:], 1234)
	binary.BigEndian.PutUint16(udp[2:], 5678)
	binary.BigEndian.PutUint16(udp[4:], uint16(size-14-20))
	return f
}

func mustMAC(s string) []byte {
	m, _ := net.ParseMAC(s)
	return m
}
