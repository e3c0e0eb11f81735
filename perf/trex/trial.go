package trex

import (
	"context"
	"fmt"
	"time"
)

// Trialer runs one traffic trial on TRex for perf/search: the streams
// already on port Tx (added by the caller; their rates are scaled by the
// pps multiplier) are sent for d at rate pps, and the frames counted on
// port Rx are the ones received. Both ports must be acquired. Frames TRex
// could not send in time count as sent and lost (see offered).
type Trialer struct {
	C      *Client
	Tx, Rx int
	// Settle is how long the counters must stay unchanged after the
	// traffic stopped before they are read (default 200ms).
	Settle time.Duration
}

// Trial implements search.Trialer.
func (t Trialer) Trial(ctx context.Context, rate float64, d time.Duration) (sent, received uint64, err error) {
	settle := t.Settle
	if settle <= 0 {
		settle = 200 * time.Millisecond
	}
	tx0, err := t.C.PortStats(ctx, t.Tx)
	if err != nil {
		return 0, 0, err
	}
	rx0, err := t.C.PortStats(ctx, t.Rx)
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	if err := t.C.StartTraffic(ctx, t.Tx, rate, d); err != nil {
		return 0, 0, err
	}
	for {
		select {
		case <-ctx.Done():
			t.C.StopTraffic(context.Background(), t.Tx)
			return 0, 0, ctx.Err()
		case <-time.After(max(d-time.Since(start), 20*time.Millisecond)):
		}
		st, err := t.C.PortStatus(ctx, t.Tx)
		if err != nil {
			return 0, 0, err
		}
		if st.State != "TX" {
			break
		}
		if time.Since(start) > d+10*time.Second {
			t.C.StopTraffic(ctx, t.Tx)
			return 0, 0, fmt.Errorf("trex: port %d still transmitting %v after a %v trial", t.Tx, time.Since(start)-d, d)
		}
	}
	var last [2]uint64
	stable := time.Now()
	for {
		tx, err := t.C.PortStats(ctx, t.Tx)
		if err != nil {
			return 0, 0, err
		}
		rx, err := t.C.PortStats(ctx, t.Rx)
		if err != nil {
			return 0, 0, err
		}
		now := [2]uint64{tx.Sub(tx0).OPackets, rx.Sub(rx0).IPackets}
		if now != last {
			last, stable = now, time.Now()
		} else if time.Since(stable) >= settle {
			return offered(rate, d, now[0]), now[1], nil
		}
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(settle / 4):
		}
	}
}

// offered is what a trial counts as sent: what TRex sent, or the count
// the rate asked for when TRex fell more than 0.1 % short of it (a
// generator starved of CPU), so that a search never credits a device with
// a rate nobody offered it. The 0.1 % is TRex's own timing slack.
func offered(rate float64, d time.Duration, sent uint64) uint64 {
	want := uint64(rate*d.Seconds() + 0.5)
	if float64(sent) < 0.999*float64(want) {
		return want
	}
	return sent
}
