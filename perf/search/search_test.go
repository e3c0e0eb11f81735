package search

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// sim is a simulated device: it forwards up to capacity pps (each trial's
// capacity drawn within ±noise of it) plus a buffer of buf packets per
// trial, and drops the rest. Trials take no real time.
type sim struct {
	capacity float64
	noise    float64 // relative
	buf      float64 // packets absorbed per trial beyond capacity
	lossAll  float64 // if > 0: this loss ratio at every rate
	rng      *rand.Rand
	trials   int
}

func (s *sim) Trial(ctx context.Context, rate float64, d time.Duration) (uint64, uint64, error) {
	s.trials++
	sent := uint64(math.Round(rate * d.Seconds()))
	if s.lossAll > 0 {
		return sent, uint64(float64(sent) * (1 - s.lossAll)), nil
	}
	c := s.capacity
	if s.noise > 0 {
		c *= 1 + s.noise*(2*s.rng.Float64()-1)
	}
	room := c*d.Seconds() + s.buf
	if float64(sent) <= room {
		return sent, sent, nil
	}
	return sent, uint64(room), nil
}

func logf(t *testing.T) func(string, ...any) {
	return func(f string, a ...any) { t.Helper(); t.Logf(f, a...) }
}

func TestConvergesToCapacity(t *testing.T) {
	for _, tc := range []struct {
		name      string
		capacity  float64
		noise     float64
		precision float64
		maxRate   float64
	}{
		{"exact", 1_234_567, 0, 0.005, 10_000_000},
		{"exact-fine", 777_777, 0, 0.001, 14_880_952},
		{"noise-0.2%", 2_000_000, 0.002, 0.005, 10_000_000},
		{"noise-1%", 500_000, 0.01, 0.01, 10_000_000},
		{"capacity-near-max", 9_990_000, 0, 0.005, 10_000_000},
		{"capacity-near-min", 12_000, 0, 0.005, 10_000_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for seed := uint64(1); seed <= 50; seed++ {
				dev := &sim{capacity: tc.capacity, noise: tc.noise, rng: rand.New(rand.NewPCG(seed, 42))}
				cfg := Config{MaxRate: tc.maxRate, Precision: tc.precision, InitialDuration: time.Second, FinalDuration: 30 * time.Second}
				if seed == 1 {
					cfg.Logf = logf(t)
				}
				r, err := Run(context.Background(), dev, cfg)
				if err != nil {
					t.Fatal(err)
				}
				c := tc.capacity
				// NDR: passing means every packet came through, so it can
				// be above capacity only by the noise; precision bounds it
				// from below.
				tol := tc.precision + tc.noise
				if r.NDR.Lower > c*(1+tc.noise) || r.NDR.Lower < c*(1-tol) {
					t.Errorf("seed %d: NDR %.0f, capacity %.0f, tolerance %.2f%%", seed, r.NDR.Lower, c, 100*tol)
				}
				if r.NDR.Upper < r.NDR.Lower || r.NDR.Width() > tc.precision+1e-12 {
					t.Errorf("seed %d: NDR bounds %+v width %.4f > precision %.4f", seed, r.NDR, r.NDR.Width(), tc.precision)
				}
				// PDR: loss 1-c/r <= 0.5% up to r = c/0.995.
				pdr := c / (1 - 0.005)
				if pdr > tc.maxRate {
					pdr = tc.maxRate
				}
				if r.PDR.Lower > pdr*(1+tc.noise) || r.PDR.Lower < pdr*(1-tol) {
					t.Errorf("seed %d: PDR %.0f, expected %.0f, tolerance %.2f%%", seed, r.PDR.Lower, pdr, 100*tol)
				}
				if r.PDR.Lower < r.NDR.Lower {
					t.Errorf("seed %d: PDR %.0f below NDR %.0f", seed, r.PDR.Lower, r.NDR.Lower)
				}
				// The final verdicts are from full-duration trials.
				var final int
				for _, tr := range r.Trials {
					if tr.Duration == cfg.FinalDuration {
						final++
					}
				}
				if final == 0 {
					t.Errorf("seed %d: no trial at the final duration", seed)
				}
				if seed == 1 {
					t.Logf("NDR %.0f (bounds %.0f..%.0f) PDR %.0f (bounds %.0f..%.0f): %d trials (%d at %v), %v of traffic",
						r.NDR.Lower, r.NDR.Lower, r.NDR.Upper, r.PDR.Lower, r.PDR.Lower, r.PDR.Upper, len(r.Trials), final, cfg.FinalDuration, r.TrialTime)
				}
			}
		})
	}
}

// A device that absorbs a burst in its buffers passes short trials above
// its capacity: only full-duration trials may decide.
func TestFinalDurationDecides(t *testing.T) {
	dev := &sim{capacity: 1_000_000, buf: 200_000}
	cfg := Config{MaxRate: 10_000_000, Precision: 0.005, InitialDuration: time.Second, FinalDuration: 20 * time.Second, Logf: logf(t)}
	r, err := Run(context.Background(), dev, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// At 1 s the buffer lets 1.2 Mpps through; at 20 s only 1.01 Mpps.
	want := 1_000_000 + 200_000/20.0
	if r.NDR.Lower > want || r.NDR.Lower < want*(1-cfg.Precision) {
		t.Errorf("NDR %.0f, want %.0f within %.1f%%", r.NDR.Lower, want, 100*cfg.Precision)
	}
}

func TestFailingDeviceReportsZero(t *testing.T) {
	for _, tc := range []struct {
		name string
		dev  Trialer
	}{
		{"drops-everything", &sim{lossAll: 1}},
		{"loses-1%-at-any-rate", &sim{lossAll: 0.01}},
		{"sends-nothing", TrialFunc(func(context.Context, float64, time.Duration) (uint64, uint64, error) { return 0, 0, nil })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Run(context.Background(), tc.dev, Config{MaxRate: 10_000_000, Logf: logf(t)})
			if err != nil {
				t.Fatal(err)
			}
			if r.NDR.Lower != 0 || r.PDR.Lower != 0 {
				t.Errorf("NDR %.0f PDR %.0f, want 0 and 0", r.NDR.Lower, r.PDR.Lower)
			}
			if len(r.Trials) > 30 {
				t.Errorf("%d trials to find nothing", len(r.Trials))
			}
		})
	}
	// Loses 0.1 % everywhere: NDR 0, PDR at MaxRate.
	r, err := Run(context.Background(), &sim{lossAll: 0.001}, Config{MaxRate: 1e6, Logf: logf(t)})
	if err != nil {
		t.Fatal(err)
	}
	if r.NDR.Lower != 0 || r.PDR.Lower != 1e6 {
		t.Errorf("0.1%% loss everywhere: NDR %.0f PDR %.0f, want 0 and 1e6", r.NDR.Lower, r.PDR.Lower)
	}
}

func TestLosslessDeviceReportsMax(t *testing.T) {
	dev := &sim{capacity: 1e12}
	r, err := Run(context.Background(), dev, Config{MaxRate: 1e6})
	if err != nil {
		t.Fatal(err)
	}
	if r.NDR.Lower != 1e6 || r.PDR.Lower != 1e6 {
		t.Errorf("NDR %.0f PDR %.0f, want 1e6", r.NDR.Lower, r.PDR.Lower)
	}
	if len(r.Trials) != 3 {
		t.Errorf("%d trials, want 3 (MaxRate once per phase)", len(r.Trials))
	}
}

func TestErrors(t *testing.T) {
	boom := errors.New("boom")
	_, err := Run(context.Background(), TrialFunc(func(context.Context, float64, time.Duration) (uint64, uint64, error) { return 0, 0, boom }), Config{MaxRate: 1e6})
	if !errors.Is(err, boom) {
		t.Errorf("err %v, want boom", err)
	}
	_, err = Run(context.Background(), &sim{capacity: 5e5}, Config{MaxRate: 1e6, MaxTrials: 3})
	if !errors.Is(err, ErrTooManyTrials) {
		t.Errorf("err %v, want ErrTooManyTrials", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = Run(ctx, &sim{capacity: 5e5}, Config{MaxRate: 1e6})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err %v, want context.Canceled", err)
	}
}

func TestEveryTrialLogged(t *testing.T) {
	var lines []string
	r, err := Run(context.Background(), &sim{capacity: 3e5}, Config{MaxRate: 1e6, Logf: func(f string, a ...any) {
		lines = append(lines, fmt.Sprintf(f, a...))
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != len(r.Trials) {
		t.Fatalf("%d log lines for %d trials", len(lines), len(r.Trials))
	}
	for i, l := range lines {
		want := fmt.Sprintf("loss %.4f%%", 100*r.Trials[i].Loss)
		if !strings.Contains(l, want) {
			t.Errorf("line %q lacks %q", l, want)
		}
	}
}
