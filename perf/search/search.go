// Package search finds the highest rate a device forwards with no loss
// (NDR) and with loss within a tolerance (PDR, 0.5 % by default), by binary
// search over the offered rate in the manner of MLRsearch (RFC 2544's
// throughput search, as refined by FD.io CSIT; draft-ietf-bmwg-mlrsearch):
//
//   - the search runs in phases of growing trial duration, from a short
//     initial trial to the final duration; each phase narrows the interval
//     to a coarser width than the next, and the final phase to Precision;
//   - a bound found in an earlier (shorter) phase is re-measured at the
//     current phase's duration before it is trusted; a lower bound that
//     fails becomes an upper bound and the search widens downwards
//     (doubling the step) until a rate passes, and symmetrically upwards;
//   - every trial classifies both targets at once (a rate that passes NDR
//     passes PDR; one that fails PDR fails NDR);
//   - the first trial is at MaxRate; its received rate is the first guess
//     of where the lower bound is;
//   - from a lower bound far below the upper one the search gallops
//     upwards (steps doubling from the phase's width) before bisecting;
//   - a device that loses at MinRate at some duration reports 0.
//
// Results are the lower bounds: rates that passed at the final duration.
package search

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// Trialer offers traffic at rate (packets per second, aggregate) for d and
// says how many packets were sent and received.
type Trialer interface {
	Trial(ctx context.Context, rate float64, d time.Duration) (sent, received uint64, err error)
}

// TrialFunc adapts a function to Trialer.
type TrialFunc func(ctx context.Context, rate float64, d time.Duration) (sent, received uint64, err error)

// Trial calls f.
func (f TrialFunc) Trial(ctx context.Context, rate float64, d time.Duration) (uint64, uint64, error) {
	return f(ctx, rate, d)
}

// Config parametrises a search. Zero fields take the defaults noted.
type Config struct {
	// MinRate and MaxRate bound the search (pps). MaxRate is required;
	// MinRate defaults to MaxRate/1000.
	MinRate, MaxRate float64
	// Precision is the final relative width of each interval:
	// (upper-lower)/upper. Default 0.005.
	Precision float64
	// PDRLoss is the loss ratio PDR tolerates. Default 0.005 (0.5 %).
	PDRLoss float64
	// InitialDuration is the first phase's trial duration (default 1s),
	// FinalDuration the last one's (default 30s).
	InitialDuration, FinalDuration time.Duration
	// Phases is the number of phases before the final one (default 2).
	// Phase i of n uses a width Precision * 2^(n-i) and a duration
	// growing geometrically from InitialDuration to FinalDuration.
	Phases int
	// MaxTrials stops a search that does not converge (default 100).
	MaxTrials int
	// Logf receives one line per trial (default: none).
	Logf func(format string, args ...any)
}

// Trial is one measurement.
type Trial struct {
	Phase          int // 0-based; Phases is the final phase
	Rate           float64
	Duration       time.Duration
	Sent, Received uint64
	Loss           float64 // ratio (sent-received)/sent; 1 when nothing was sent
}

// Bounds is the outcome for one loss tolerance. Lower passed and Upper
// failed at the final duration (Upper is MaxRate when MaxRate passed, and
// Lower is 0 when MinRate failed).
type Bounds struct {
	Lower, Upper float64
}

// Width is (Upper-Lower)/Upper.
func (b Bounds) Width() float64 {
	if b.Upper == 0 {
		return 0
	}
	return (b.Upper - b.Lower) / b.Upper
}

// Result is a search's outcome.
type Result struct {
	NDR, PDR Bounds
	Trials   []Trial
	// TrialTime is the sum of the trial durations.
	TrialTime time.Duration
}

// ErrTooManyTrials is returned (with the partial Result) when MaxTrials
// trials did not reach the precision.
var ErrTooManyTrials = errors.New("search: too many trials")

type bound struct {
	rate  float64
	valid bool // measured in the current phase
}

type target struct {
	name   string
	loss   float64 // tolerated loss ratio
	lo, hi *bound
	zero   bool    // MinRate failed
	step   float64 // relative step of the external search
	hint   float64 // first guess for the lower bound
}

func (t *target) passes(loss float64) bool { return loss <= t.loss }

func (t *target) record(rate float64, pass bool) {
	if pass {
		if t.lo == nil || !t.lo.valid || rate >= t.lo.rate {
			t.lo = &bound{rate, true}
		}
		if t.hi != nil && t.hi.rate <= rate {
			t.hi = nil // stale or contradicted by this measurement
		}
		return
	}
	if t.hi == nil || !t.hi.valid || rate <= t.hi.rate {
		t.hi = &bound{rate, true}
	}
	if t.lo != nil && t.lo.rate >= rate {
		t.lo = nil
	}
}

// Run searches NDR and PDR.
func Run(ctx context.Context, dev Trialer, cfg Config) (Result, error) {
	if cfg.MaxRate <= 0 {
		return Result{}, errors.New("search: MaxRate must be > 0")
	}
	if cfg.MinRate <= 0 {
		cfg.MinRate = cfg.MaxRate / 1000
	}
	if cfg.MinRate > cfg.MaxRate {
		return Result{}, errors.New("search: MinRate > MaxRate")
	}
	if cfg.Precision <= 0 {
		cfg.Precision = 0.005
	}
	if cfg.PDRLoss <= 0 {
		cfg.PDRLoss = 0.005
	}
	if cfg.InitialDuration <= 0 {
		cfg.InitialDuration = time.Second
	}
	if cfg.FinalDuration <= 0 {
		cfg.FinalDuration = 30 * time.Second
	}
	if cfg.InitialDuration > cfg.FinalDuration {
		cfg.InitialDuration = cfg.FinalDuration
	}
	if cfg.Phases < 0 {
		cfg.Phases = 0
	} else if cfg.Phases == 0 {
		cfg.Phases = 2
	}
	if cfg.MaxTrials <= 0 {
		cfg.MaxTrials = 100
	}
	s := &searcher{dev: dev, cfg: cfg,
		ndr: &target{name: "NDR", loss: 0},
		pdr: &target{name: "PDR", loss: cfg.PDRLoss},
	}
	n := cfg.Phases
	for p := 0; p <= n; p++ {
		d := cfg.FinalDuration
		if p < n {
			ratio := float64(cfg.FinalDuration) / float64(cfg.InitialDuration)
			d = time.Duration(float64(cfg.InitialDuration) * math.Pow(ratio, float64(p)/float64(n)))
		}
		width := cfg.Precision * math.Pow(2, float64(n-p))
		s.phase = p
		for _, t := range []*target{s.ndr, s.pdr} {
			if t.lo != nil {
				t.lo.valid = false
			}
			if t.hi != nil {
				t.hi.valid = false
			}
		}
		// PDR first: its bounds are above NDR's, and its trials bound NDR
		// from above. A noisy trial for one target can undo the other's
		// bound: go round until neither needs a trial.
		for again := true; again; {
			again = false
			for _, t := range []*target{s.pdr, s.ndr} {
				n0 := len(s.res.Trials)
				if err := s.narrow(ctx, t, d, width); err != nil {
					return s.result(), err
				}
				again = again || (t == s.ndr && len(s.res.Trials) > n0)
			}
		}
	}
	return s.result(), nil
}

type searcher struct {
	dev      Trialer
	cfg      Config
	ndr, pdr *target
	phase    int
	res      Result
}

func (s *searcher) result() Result {
	r := s.res
	for _, x := range []struct {
		t *target
		b *Bounds
	}{{s.ndr, &r.NDR}, {s.pdr, &r.PDR}} {
		if x.t.lo != nil && x.t.lo.valid && !x.t.zero {
			x.b.Lower = x.t.lo.rate
		}
		x.b.Upper = s.cfg.MaxRate
		if x.t.hi != nil && x.t.hi.valid {
			x.b.Upper = x.t.hi.rate
		}
	}
	return r
}

func (s *searcher) measure(ctx context.Context, rate float64, d time.Duration) (Trial, error) {
	if len(s.res.Trials) >= s.cfg.MaxTrials {
		return Trial{}, fmt.Errorf("%w (%d)", ErrTooManyTrials, s.cfg.MaxTrials)
	}
	if err := ctx.Err(); err != nil {
		return Trial{}, err
	}
	sent, recv, err := s.dev.Trial(ctx, rate, d)
	if err != nil {
		return Trial{}, fmt.Errorf("search: trial at %.0f pps for %v: %w", rate, d, err)
	}
	tr := Trial{Phase: s.phase, Rate: rate, Duration: d, Sent: sent, Received: recv, Loss: 1}
	if sent > 0 {
		tr.Loss = max(0, (float64(sent)-float64(recv))/float64(sent))
	}
	s.res.Trials = append(s.res.Trials, tr)
	s.res.TrialTime += d
	ndrPass, pdrPass := s.ndr.passes(tr.Loss), s.pdr.passes(tr.Loss)
	s.ndr.record(rate, ndrPass)
	s.pdr.record(rate, pdrPass)
	if rate <= s.cfg.MinRate {
		s.ndr.zero = s.ndr.zero || !ndrPass
		s.pdr.zero = s.pdr.zero || !pdrPass
	}
	if s.cfg.Logf != nil {
		short := ""
		if offered := rate * d.Seconds(); float64(sent) < 0.99*offered {
			// The generator did not keep up: the loss is of what it sent.
			short = fmt.Sprintf(" [sent only %.1f%% of the %.0f offered]", 100*float64(sent)/offered, offered)
		}
		s.cfg.Logf("trial %d phase %d/%d: %.0f pps for %v: sent %d received %d loss %.4f%% (NDR %s, PDR %s)%s",
			len(s.res.Trials), s.phase, s.cfg.Phases, rate, d, sent, recv, 100*tr.Loss, verdict(ndrPass), verdict(pdrPass), short)
	}
	return tr, nil
}

func verdict(pass bool) string {
	if pass {
		return "pass"
	}
	return "fail"
}

// narrow measures until t has a lower and an upper bound valid at duration
// d and no more than width apart (relative), or MaxRate passes, or
// MinRate fails.
func (s *searcher) narrow(ctx context.Context, t *target, d time.Duration, width float64) error {
	minR, maxR := s.cfg.MinRate, s.cfg.MaxRate
	t.step = width
	var rate float64
	for {
		switch {
		case t.zero:
			return nil
		case t.lo != nil && !t.lo.valid:
			rate = t.lo.rate // re-validate at this duration
		case t.hi != nil && !t.hi.valid:
			rate = t.hi.rate
		case t.lo == nil && t.hi == nil:
			rate = maxR
		case t.lo == nil: // only an upper bound: widen downwards
			if t.hi.rate <= minR {
				t.zero = true
				return nil
			}
			rate = t.hi.rate * (1 - t.step)
			if t.hint > 0 && t.hint < t.hi.rate {
				rate = min(rate, t.hint)
			}
			t.hint = 0
			t.step = min(2*t.step, 0.5)
			rate = max(rate, minR)
		case t.hi == nil: // only a lower bound: widen upwards
			if t.lo.rate >= maxR {
				return nil
			}
			rate = min(t.lo.rate/(1-t.step), maxR)
			t.step = min(2*t.step, 0.5)
		default:
			if (t.hi.rate-t.lo.rate)/t.hi.rate <= width {
				return nil
			}
			// Bisect, but gallop up from a lower bound far below the
			// upper one (the upper bound is often MaxRate and the lower
			// one a good guess from the MaxRate trial).
			rate = (t.lo.rate + t.hi.rate) / 2
			if up := t.lo.rate / (1 - t.step); up < rate {
				rate = up
				t.step = min(2*t.step, 0.5)
			}
		}
		tr, err := s.measure(ctx, rate, d)
		if err != nil {
			return err
		}
		if rate == maxR && !t.passes(tr.Loss) && d > 0 {
			// MRR: what came through at MaxRate is a good first guess.
			rx := float64(tr.Received) / d.Seconds()
			for _, x := range []*target{s.ndr, s.pdr} {
				if x.lo == nil {
					x.hint = rx * (1 - x.loss)
				}
			}
		}
	}
}
