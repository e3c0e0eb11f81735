package agent

import (
	"context"
	"log/slog"
	"time"
)

// phases times the steps of one call for the debug log ("where does an
// ADD's time go"), at the cost of a clock read per step.
type phases struct {
	start, last time.Time
	attrs       []slog.Attr
}

func newPhases() *phases {
	now := time.Now()
	return &phases{start: now, last: now}
}

// done closes the step name.
func (p *phases) done(name string) {
	now := time.Now()
	p.attrs = append(p.attrs, slog.Duration(name, now.Sub(p.last)))
	p.last = now
}

func (p *phases) log(l *slog.Logger, verb, container string) {
	if !l.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	attrs := append([]slog.Attr{slog.String("container", container), slog.Duration("total", time.Since(p.start))}, p.attrs...)
	l.LogAttrs(context.Background(), slog.LevelDebug, verb+" phases", attrs...)
}
