package dataplane

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/telcni/telcni/perf/trex"
)

// trexGen drives TRex's two ports (port 0 sends, port 1 receives) as a
// search.Trialer.
type trexGen struct {
	c    *trex.Client
	addr Addressing
	trex.Trialer
}

func newTRexGen(ctx context.Context, c *trex.Client, a Addressing) (*trexGen, error) {
	for p := 0; p < 2; p++ {
		if err := c.Acquire(ctx, p, true); err != nil {
			return nil, err
		}
		if err := c.Reset(ctx, p); err != nil {
			return nil, err
		}
	}
	return &trexGen{c: c, addr: a, Trialer: trex.Trialer{C: c, Tx: 0, Rx: 1}}, nil
}

// setProfile replaces port 0's streams with one per frame size, their
// rates in the profile's proportions (start_traffic scales the total).
func (g *trexGen) setProfile(ctx context.Context, p Profile) error {
	if err := g.c.RemoveAllStreams(ctx, 0); err != nil {
		return err
	}
	for i, s := range p.Sizes {
		if err := g.c.AddStream(ctx, 0, uint32(i+1), g.addr.frame(s), float64(p.Weights[i])); err != nil {
			return fmt.Errorf("profile %s: %w", p.Name, err)
		}
	}
	return nil
}

// prime sends a few frames from port 1 so that a learning bridge knows it.
func (g *trexGen) prime(ctx context.Context) error {
	f := g.addr.reverse()
	if f == nil {
		return nil
	}
	if err := g.c.RemoveAllStreams(ctx, 1); err != nil {
		return err
	}
	if err := g.c.AddStream(ctx, 1, 1, f, 1); err != nil {
		return err
	}
	if err := g.c.StartTraffic(ctx, 1, 100, 100*time.Millisecond); err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond)
	return g.c.RemoveAllStreams(ctx, 1)
}

func (g *trexGen) release(ctx context.Context) {
	for p := 0; p < 2; p++ {
		_ = g.c.Reset(ctx, p)
		_ = g.c.Release(ctx, p)
	}
}

// latency measures TRex's latency at 10, 50 and 90 % of ndr: the profile's
// streams carry the rate less a 64 B latency stream of up to 1,000 pps
// (its own packet group per load, so each reading starts at zero).
func (g *trexGen) latency(ctx context.Context, t *testing.T, p Profile, ndr float64, d time.Duration) []LatencyPoint {
	var pts []LatencyPoint
	for _, pct := range []int{10, 50, 90} {
		rate := ndr * float64(pct) / 100
		latRate := min(1000, rate/10)
		pgid := uint32(100 + pct)
		l, err := g.latencyTrial(ctx, p, rate, latRate, pgid, d)
		if err != nil {
			t.Errorf("TRex latency at %d %% of NDR: %v", pct, err)
			continue
		}
		loss := 0.0
		if l.Sent > 0 {
			loss = float64(l.Sent-min(l.Sent, l.Received)) / float64(l.Sent)
		}
		lat := Latency{Samples: l.Received, MinUs: l.MinUs, AvgUs: l.AvgUs, MaxUs: l.MaxUs,
			P50Us: l.Quantile(0.5), P90Us: l.Quantile(0.9), P99Us: l.Quantile(0.99), P999Us: l.Quantile(0.999)}
		t.Logf("TRex latency at %d %% of NDR (%.0f pps): p50 %.0f µs p90 %.0f µs p99 %.0f µs max %.0f µs, latency stream loss %.4f %%", pct, rate, lat.P50Us, lat.P90Us, lat.P99Us, lat.MaxUs, loss*100)
		pts = append(pts, LatencyPoint{Generator: "trex", Percent: pct, Rate: rate, Loss: loss, Latency: lat})
	}
	return pts
}

func (g *trexGen) latencyTrial(ctx context.Context, p Profile, rate, latRate float64, pgid uint32, d time.Duration) (trex.Latency, error) {
	if err := g.c.RemoveAllStreams(ctx, 0); err != nil {
		return trex.Latency{}, err
	}
	var sum float64
	for _, w := range p.Weights {
		sum += float64(w)
	}
	for i, s := range p.Sizes {
		if err := g.c.AddStream(ctx, 0, uint32(i+1), g.addr.frame(s), (rate-latRate)*float64(p.Weights[i])/sum); err != nil {
			return trex.Latency{}, err
		}
	}
	if err := g.c.AddLatencyStream(ctx, 0, 99, pgid, g.addr.frame(64), latRate); err != nil {
		return trex.Latency{}, err
	}
	if err := g.c.StartTrafficAsIs(ctx, 0, d); err != nil {
		return trex.Latency{}, err
	}
	// Wait for the end of the traffic, then for the counters to settle.
	deadline := time.Now().Add(d + 10*time.Second)
	var last trex.Latency
	stable := 0
	for time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		st, err := g.c.PortStatus(ctx, 0)
		if err != nil {
			return trex.Latency{}, err
		}
		l, err := g.c.PGIDStats(ctx, pgid)
		if err != nil && st.State != "TX" {
			return trex.Latency{}, err
		}
		if st.State == "TX" {
			continue
		}
		if l.Received == last.Received && l.Sent == last.Sent {
			if stable++; stable >= 2 {
				return l, nil
			}
		} else {
			stable = 0
		}
		last = l
	}
	return trex.Latency{}, fmt.Errorf("latency trial did not settle in %v", d+10*time.Second)
}
