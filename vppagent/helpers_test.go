package vppagent

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/memif"
	"github.com/telcni/telcni/vppagent/vpptest"
)

// newNetns makes a netns for a simulated pod, deleted at cleanup.
func newNetns(t testing.TB) string { return netnstest.New(t) }

func run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := runOut(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func runOut(args ...string) (string, error) {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

type testAgent struct {
	m      *Manager
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startAgent runs a Manager against v and hands it keep, the records an
// agent would have at start-up (none for a fresh agent); stop ends it
// without touching VPP (as if the agent died).
func startAgent(t testing.TB, v *vpptest.VPP, keep []PodInterface, runDir string) *testAgent {
	t.Helper()
	m, err := NewManager(Config{
		Conn:   ConnConfig{APISocket: v.APISocket, StatsSocket: v.StatsSocket, PingInterval: 200 * time.Millisecond, MaxBackoff: 500 * time.Millisecond},
		RunDir: runDir,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &testAgent{m: m, cancel: cancel}
	a.wg.Add(1)
	go func() { defer a.wg.Done(); m.Run(ctx) }()
	t.Cleanup(a.stop)
	waitReady(t, m, 15*time.Second)
	if err := m.Retain(ctx, keep); err != nil {
		t.Fatal(err)
	}
	return a
}

func (a *testAgent) stop() {
	a.cancel()
	a.wg.Wait()
}

func waitReady(t testing.TB, m *Manager, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for m.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("agent not ready after %v: %v", d, m.Ready())
		}
		select {
		case <-m.Conn().Changed():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// pods runs podSims until the test ends.
type pods struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ctx    context.Context
}

func startPods(t testing.TB) *pods {
	ctx, cancel := context.WithCancel(context.Background())
	p := &pods{cancel: cancel, ctx: ctx}
	t.Cleanup(func() { p.cancel(); p.wg.Wait() })
	return p
}

// add starts a pod application on the memif described by rec.
func (p *pods) add(rec *Record, mac string) *podSim {
	mi := rec.DeviceInfo.Memif
	cfg := memif.Config{Socket: mi.Path, ID: mi.ID, Name: rec.Spec.IfName}
	if strings.HasPrefix(mi.Path, "abstract:") {
		cfg.Netns = rec.Spec.Netns
	}
	ps := newPodSim(cfg, mac, rec.Spec.IPs[0].Addr())
	for _, ip := range rec.Spec.IPs[1:] {
		if ip.Addr().Is6() {
			ps.ip6 = ip.Addr()
		}
	}
	p.wg.Add(1)
	go ps.run(p.ctx, &p.wg)
	return ps
}

func mustPing(t testing.TB, from *podSim, next, dst netip.Addr, seq uint16, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := from.ping(ctx, next, dst, seq); err != nil {
		t.Fatalf("ping %s -> %s (seq %d): %v", from.ip, dst, seq, err)
	}
}

func shortTemp(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "tcni")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// addABC adds the interfaces fh0 of pods A, B and C (cidA, cidB, cidC) on
// network n, at 10.9.0.1, .2 and .3/24, each in a netns of its own.
func addABC(ctx context.Context, t testing.TB, a *testAgent, n Network) []*Record {
	t.Helper()
	var recs []*Record
	for i, cid := range []string{cidA, cidB, cidC} {
		r, err := a.m.Add(ctx, PodInterface{ContainerID: cid, IfName: "fh0", Netns: newNetns(t), Network: n,
			IPs: []netip.Prefix{pfx(fmt.Sprintf("10.9.0.%d/24", i+1))}})
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	return recs
}
