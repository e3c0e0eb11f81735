package trex

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/telcni/telcni/perf/search"
)

func TestUDPFrame(t *testing.T) {
	b := UDPFrame(UDPFrameSpec{Size: 64})
	if len(b) != 60 {
		t.Fatalf("len %d, want 60 (64 minus FCS)", len(b))
	}
	if ipChecksum(b[14:34]) != 0 {
		t.Errorf("IPv4 header checksum does not verify")
	}
	if got := binary.BigEndian.Uint16(b[16:]); got != 46 {
		t.Errorf("IPv4 total length %d, want 46", got)
	}
	if got := binary.BigEndian.Uint16(b[38:]); got != 26 {
		t.Errorf("UDP length %d, want 26", got)
	}
}

// TestTRexLoop: handshake, both ports acquired, 64-byte UDP at 10 kpps
// for 1 s from port 0; TRex counts them sent on port 0 and received on
// port 1 after the Go memif forwarder.
func TestTRexLoop(t *testing.T) {
	s := StartServer(t)
	c := s.Client
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if c.Version.Version == "" || c.APIHandle() == "" {
		t.Fatalf("version %+v api_h %q", c.Version, c.APIHandle())
	}
	t.Logf("version %+v api_h %s", c.Version, c.APIHandle())

	// A TRex error carries TRex's message.
	var te *Error
	err := c.Call(ctx, "start_traffic", map[string]any{"port_id": 0, "handler": "bogus",
		"mul": map[string]any{"type": "pps", "op": "abs", "value": 1000}, "duration": 1.0, "force": true}, nil)
	if !errors.As(err, &te) {
		t.Fatalf("start_traffic on a port not acquired: %v, want *trex.Error", err)
	}
	t.Logf("start_traffic before acquire: %v", err)
	err = c.Call(ctx, "no_such_method", nil, nil)
	if !errors.As(err, &te) {
		t.Fatalf("unknown method: %v, want *trex.Error", err)
	}
	t.Logf("unknown method: %v", err)

	acquireBoth(ctx, t, c)
	if err := c.SetL2(ctx, 0, "02:00:00:00:00:02"); err != nil {
		t.Fatal(err)
	}
	if err := c.SetL2(ctx, 1, "02:00:00:00:00:01"); err != nil {
		t.Fatal(err)
	}
	if err := c.AddStream(ctx, 0, 1, UDPFrame(UDPFrameSpec{Size: 64}), 1); err != nil {
		t.Fatal(err)
	}
	err = c.AddStream(ctx, 0, 1, UDPFrame(UDPFrameSpec{Size: 64}), 1)
	if !errors.As(err, &te) {
		t.Fatalf("duplicate stream: %v, want *trex.Error", err)
	}
	t.Logf("duplicate stream: %v", err)

	before := [2]PortStats{}
	for p := range before {
		if before[p], err = c.PortStats(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now()
	if err := c.StartTraffic(ctx, 0, 10_000, time.Second); err != nil {
		t.Fatal(err)
	}
	// Wait for the port to go back to idle, then for the counters to settle.
	for {
		st, err := c.PortStatus(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		if st.State != "TX" {
			break
		}
		if time.Since(t0) > 10*time.Second {
			t.Fatalf("port 0 still transmitting after %v", time.Since(t0))
		}
		time.Sleep(50 * time.Millisecond)
	}
	var d [2]PortStats
	for i := 0; i < 20; i++ {
		time.Sleep(100 * time.Millisecond)
		prev := d
		for p := range d {
			now, err := c.PortStats(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			d[p] = now.Sub(before[p])
		}
		if i > 0 && d == prev {
			break
		}
	}
	g, err := c.GlobalStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("port 0 sent %d (%d B), port 1 received %d (%d B); forwarder 0->1 %d, 1->0 %d; global tx %d rx %d cpu %.1f%%",
		d[0].OPackets, d[0].OBytes, d[1].IPackets, d[1].IBytes, s.Forwarded[0].Load(), s.Forwarded[1].Load(), g.TotalTxPkt, g.TotalRxPkt, g.CPUUtil)
	if d[0].OPackets < 9_000 || d[0].OPackets > 11_000 {
		t.Errorf("port 0 sent %d packets, want about 10000", d[0].OPackets)
	}
	if d[1].IPackets != d[0].OPackets {
		t.Errorf("port 1 received %d of %d", d[1].IPackets, d[0].OPackets)
	}
	for p := 0; p < 2; p++ {
		if err := c.Reset(ctx, p); err != nil {
			t.Error(err)
		}
		if err := c.Release(ctx, p); err != nil {
			t.Error(err)
		}
	}
}

// TestTRexSearch: a short NDR/PDR search through TRex and the Go memif
// forwarder (the forwarder, not TRex, is the device under test here).
func TestTRexSearch(t *testing.T) {
	if os.Getenv("TELCNI_TREX_SEARCH") != "1" {
		t.Skip("about 40 s; set TELCNI_TREX_SEARCH=1")
	}
	s := StartServer(t)
	c := s.Client
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	acquireBoth(ctx, t, c)
	if err := c.AddStream(ctx, 0, 1, UDPFrame(UDPFrameSpec{Size: 64}), 1); err != nil {
		t.Fatal(err)
	}
	r, err := search.Run(ctx, Trialer{C: c, Tx: 0, Rx: 1}, search.Config{
		MinRate: 1000, MaxRate: 2_000_000, Precision: 0.05,
		InitialDuration: 500 * time.Millisecond, FinalDuration: 2 * time.Second, Phases: 1,
		Logf: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("TRex -> Go memif forwarder -> TRex, 64 B: NDR %.0f pps, PDR %.0f pps (%d trials, %v of traffic)",
		r.NDR.Lower, r.PDR.Lower, len(r.Trials), r.TrialTime)
	if r.NDR.Lower < 1000 {
		t.Errorf("NDR %.0f pps: the forwarder should pass at least 1000 pps", r.NDR.Lower)
	}
}

func TestOfferedCountsShortfallAsSent(t *testing.T) {
	for _, c := range []struct {
		rate       float64
		d          time.Duration
		sent, want uint64
	}{
		{1e6, time.Second, 1_000_001, 1_000_001}, // TRex rounding up: as sent
		{1e6, time.Second, 999_500, 999_500},     // within TRex's slack
		{1e6, time.Second, 600_000, 1_000_000},   // starved: the rest is lost
		{1000, 500 * time.Millisecond, 0, 500},
	} {
		if got := offered(c.rate, c.d, c.sent); got != c.want {
			t.Errorf("offered(%v pps, %v, sent %d) = %d, want %d", c.rate, c.d, c.sent, got, c.want)
		}
	}
}

func TestLatencyQuantile(t *testing.T) {
	// A histogram TRex 3.08 returned (1,001 frames through the Go forwarder).
	l := Latency{MaxUs: 2393, Histogram: map[float64]uint64{30: 2, 40: 2, 50: 1, 60: 4, 70: 3, 80: 7, 90: 6, 100: 35, 200: 61,
		300: 30, 400: 43, 500: 52, 600: 43, 700: 69, 800: 71, 900: 60, 1000: 487, 2000: 19, 3000: 2, 8000: 2, 9000: 1, 20000: 1}}
	for _, c := range []struct{ q, want float64 }{
		{0.001, 40},  // the first 2 of 1,001 are in 30-39
		{0.5, 2000},  // 1000-1999
		{0.99, 2393}, // 2000-2999, capped by the maximum
		{0.0001, 40}, // at least one frame
	} {
		if got := l.Quantile(c.q); got != c.want {
			t.Errorf("Quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if got := (Latency{}).Quantile(0.5); got != 0 {
		t.Errorf("empty histogram: %v", got)
	}
}

// TestTRexLatency: a latency stream through the Go forwarder is counted in
// its packet group with a latency histogram.
func TestTRexLatency(t *testing.T) {
	s := StartServer(t)
	c := s.Client
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	acquireBoth(ctx, t, c)
	if err := c.AddLatencyStream(ctx, 0, 1, 7, UDPFrame(UDPFrameSpec{Size: 64}), 2000); err != nil {
		t.Fatal(err)
	}
	if err := c.StartTrafficAsIs(ctx, 0, time.Second); err != nil {
		t.Fatal(err)
	}
	var l Latency
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if l, err = c.PGIDStats(ctx, 7); err == nil && l.Received >= 1900 {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	var inHist uint64
	for _, n := range l.Histogram {
		inHist += n
	}
	t.Logf("latency: %d sent, %d received, min %.0f avg %.0f p50 %.0f p99 %.0f max %.0f µs", l.Sent, l.Received, l.MinUs, l.AvgUs, l.Quantile(0.5), l.Quantile(0.99), l.MaxUs)
	if l.Received < 1900 || l.Received > 2100 || l.Sent != l.Received {
		t.Errorf("%d latency frames received, want about 2000", l.Received)
	}
	if inHist == 0 || l.MinUs <= 0 || l.MinUs > l.AvgUs || l.AvgUs > l.MaxUs || l.Quantile(0.5) > l.Quantile(0.99) {
		t.Errorf("latency %+v is not ordered", l)
	}
	if _, err := c.PGIDStats(ctx, 99); err == nil {
		t.Error("a packet group nobody sent: no error")
	}
}

// acquireBoth takes and resets both ports.
func acquireBoth(ctx context.Context, t *testing.T, c *Client) {
	t.Helper()
	for p := 0; p < 2; p++ {
		if err := c.Acquire(ctx, p, true); err != nil {
			t.Fatal(err)
		}
		if err := c.Reset(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLatencyOfLaggingMax: a reply whose total_max lags its histogram (as
// TRex sent in CI: 0 with 2,001 frames counted) still gives an ordered
// latency: the maximum is at least the highest bucket's lower edge.
func TestLatencyOfLaggingMax(t *testing.T) {
	var r pgidReply
	if err := json.Unmarshal([]byte(`{"flow_stats":{"7":{"rp":{"1":2001},"tp":{"0":2001}}},
		"latency":{"7":{"lat":{"average":1195,"histogram":{"50":3,"100":59,"1000":1079,"6000":2},"jit":592,"total_max":0,"total_min":53}}}}`), &r); err != nil {
		t.Fatal(err)
	}
	l, err := latencyOf(7, &r)
	if err != nil {
		t.Fatal(err)
	}
	if l.MaxUs != 6000 || l.MinUs != 53 || l.Sent != 2001 || l.Received != 2001 {
		t.Fatalf("latency %+v: want max 6000 (the highest bucket), min 53, 2001 sent and received", l)
	}
	if p50, p99 := l.Quantile(0.5), l.Quantile(0.99); p50 <= 0 || p50 > p99 || p99 > l.MaxUs {
		t.Fatalf("p50 %v p99 %v max %v: not ordered", p50, p99, l.MaxUs)
	}
}
