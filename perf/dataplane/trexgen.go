package dataplane

import (
	"context"
	"fmt"
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
