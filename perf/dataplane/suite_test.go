package dataplane

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/telcni/telcni/perf/search"
	"github.com/telcni/telcni/perf/trex"
)

var (
	flagOut       = flag.String("perf.out", "", "report directory (default <module>/perf/results/<date>)")
	flagProfiles  = flag.String("perf.profiles", "64,512,1518,IMIX", "frame sizes (64-1518) and IMIX, comma-separated")
	flagScenarios = flag.String("perf.scenarios", "vpp-l2,vpp-l3,vpp-xconnect,vpp-l2-acl1000,kernel-veth,kernel-macvlan", "scenarios, comma-separated")
	flagGenerator = flag.String("perf.generator", "auto", "VPP scenarios: auto (TRex where unpacked, else go), trex or go")
	flagInitial   = flag.Duration("perf.initial", time.Second, "first phase's trial duration")
	flagFinal     = flag.Duration("perf.final", 10*time.Second, "final phase's trial duration")
	flagPhases    = flag.Int("perf.phases", 2, "phases before the final one")
	flagPrecision = flag.Float64("perf.precision", 0.01, "final relative width of the NDR/PDR intervals")
	flagMaxRate   = flag.Float64("perf.maxrate", 5e6, "highest rate tried, pps")
	flagLatency   = flag.Duration("perf.latency", 5*time.Second, "latency trial duration at 10/50/90 % of NDR (0: none)")
	flagDebug     = flag.Bool("perf.debug", false, "log the device's counters after every search")
	flagCheck     = flag.Bool("perf.check", false, "fail unless every search converged and the ratio line has numbers (make test-perf)")
)

// TestDataplane runs the data path suite and writes its report. It runs
// from `make perf` and `make test-perf` (TELCNI_PERF=1), not from a plain
// `go test ./...`: it takes minutes and loads both cores.
func TestDataplane(t *testing.T) {
	if os.Getenv("TELCNI_PERF") == "" {
		t.Skip("the data path suite runs from `make perf` (full) and `make test-perf` (short): set TELCNI_PERF=1")
	}
	if os.Geteuid() != 0 {
		t.Fatal("the data path suite needs root (netns, AF_PACKET, VPP, TRex)")
	}
	var profiles []Profile
	for _, s := range strings.Split(*flagProfiles, ",") {
		p, err := ParseProfile(strings.TrimSpace(s))
		if err != nil {
			t.Fatal(err)
		}
		profiles = append(profiles, p)
	}
	host, _ := os.Hostname()
	run := &Run{Started: time.Now(), Host: host, CPUs: runtime.NumCPU(), Load: loadavg(),
		Search: Settings{InitialDuration: flagInitial.String(), FinalDuration: flagFinal.String(), Phases: *flagPhases,
			Precision: *flagPrecision, PDRLoss: 0.005, MaxRate: *flagMaxRate, LatencyDuration: flagLatency.String()}}
	useTRex := *flagGenerator == "trex" || (*flagGenerator == "auto" && trex.Dir() != "")
	if *flagGenerator == "trex" && trex.Dir() == "" {
		t.Fatal("-perf.generator=trex but TRex is not unpacked (make deps-trex, or TREX_DIR)")
	}
	if !useTRex {
		run.Skipped = append(run.Skipped, "TRex: not unpacked (make deps-trex or TREX_DIR) or -perf.generator=go: the VPP scenarios ran with the Go memif generator")
	}
	for _, name := range strings.Split(*flagScenarios, ",") {
		name = strings.TrimSpace(name)
		build, kernel := vppScenarios[name], false
		if build == nil {
			build, kernel = kernelScenarios[name], true
		}
		if build == nil {
			t.Fatalf("unknown scenario %q", name)
		}
		t.Run(name, func(t *testing.T) {
			dut := build(t)
			run.Scenarios = append(run.Scenarios, DUTInfo{Name: dut.Name, How: dut.How})
			var byTRex []Result
			if !kernel && useTRex {
				t.Run("trex", func(t *testing.T) { byTRex = measureTRex(t, dut, profiles) })
			}
			var got []Result
			t.Run("go", func(t *testing.T) { got = measureGo(t, dut, profiles, byTRex) })
			if got == nil { // the Go generator failed: keep what TRex measured
				got = byTRex
			}
			run.Results = append(run.Results, got...)
		})
	}

	out := *flagOut
	if out == "" {
		out = filepath.Join(moduleRoot(t), "perf", "results", run.Started.UTC().Format("2006-01-02"))
	}
	if err := run.Write(out); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("perf report: %s\n", filepath.Join(out, "report.md"))
	for _, l := range run.RatioLines() {
		fmt.Println(l)
	}
	if *flagCheck {
		checkRun(t, run, out)
	}
}

// checkRun is test-perf's acceptance: the report exists, every search
// converged to a non-zero NDR, and the ratio line carries numbers.
func checkRun(t *testing.T, run *Run, out string) {
	for _, f := range []string{"report.md", "results.json", "throughput.png"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("report file %s missing or empty: %v", f, err)
		}
	}
	if len(run.Results) == 0 {
		t.Fatal("no results")
	}
	for _, r := range run.Results {
		if r.Error != "" || !r.Converged || r.NDR <= 0 {
			t.Errorf("%s/%s/%s: NDR %.0f converged %v error %q", r.Scenario, r.Generator, r.Profile, r.NDR, r.Converged, r.Error)
		}
	}
	if l := run.RatioLines()[0]; strings.Contains(l, "n/a") {
		t.Errorf("ratio line without numbers: %s", l)
	}
}

func searchConfig(t *testing.T) search.Config {
	return search.Config{MinRate: 1000, MaxRate: *flagMaxRate, Precision: *flagPrecision,
		InitialDuration: *flagInitial, FinalDuration: *flagFinal, Phases: *flagPhases, Logf: t.Logf}
}

func result(dut *DUT, gen string, p Profile, r search.Result, err error) Result {
	res := Result{Scenario: dut.Name, Generator: gen, Profile: p.Name, MeanSize: p.MeanSize(),
		NDR: r.NDR.Lower, PDR: r.PDR.Lower, NDRUpper: r.NDR.Upper, PDRUpper: r.PDR.Upper, Trials: r.Trials}
	if err != nil {
		res.Error = err.Error()
	}
	prec := *flagPrecision * 1.0001
	res.Converged = err == nil && r.NDR.Width() <= prec && r.PDR.Width() <= prec
	return res
}

// measureTRex searches every profile with TRex as the pods' memif peers.
func measureTRex(t *testing.T, dut *DUT, profiles []Profile) []Result {
	s := trex.StartServerWith(t, trex.ServerOptions{Peers: dut.Peers})
	ctx := context.Background()
	g, err := newTRexGen(ctx, s.Client, dut.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer g.release(ctx)
	if err := g.prime(ctx); err != nil {
		t.Fatal(err)
	}
	var out []Result
	for _, p := range profiles {
		if err := g.setProfile(ctx, p); err != nil {
			t.Fatal(err)
		}
		r, err := search.Run(ctx, g, searchConfig(t))
		res := result(dut, "trex", p, r, err)
		t.Logf("%s %s B via TRex: NDR %.3f Mpps, PDR %.3f Mpps (%d trials)", dut.Name, p.Name, res.NDR/1e6, res.PDR/1e6, len(r.Trials))
		if (*flagDebug || !res.Converged) && dut.Counters != nil {
			t.Logf("device counters:\n%s", dut.Counters())
		}
		if *flagLatency > 0 && res.NDR > 0 && p.Name == "64" {
			res.Latency = g.latency(ctx, t, p, res.NDR, *flagLatency)
		}
		out = append(out, res)
	}
	return out
}

// measureGo runs the Go generator: the search of each profile byTRex has
// no result for, and latency at 10/50/90 % of the scenario's NDR (added to
// TRex's). It returns the scenario's results.
func measureGo(t *testing.T, dut *DUT, profiles []Profile, byTRex []Result) []Result {
	ctx := context.Background()
	var tx, rx port
	var err error
	if dut.Ports != nil {
		tx, rx, err = dut.Ports()
	} else {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if tx, err = dialMemif(dctx, dut.Peers[0].Socket, dut.Peers[0].ID, "gen0"); err == nil {
			if rx, err = dialMemif(dctx, dut.Peers[1].Socket, dut.Peers[1].ID, "gen1"); err != nil {
				tx.close()
			}
		}
	}
	if err != nil {
		t.Fatalf("generator ports: %v", err)
	}
	defer tx.close()
	defer rx.close()
	g := newGoGen(tx, rx, dut.Addr)
	if err := g.prime(ctx); err != nil {
		t.Fatal(err)
	}
	var out []Result
	for _, p := range profiles {
		g.setProfile(p)
		i := slices.IndexFunc(byTRex, func(r Result) bool { return r.Profile == p.Name })
		var res Result
		if i >= 0 {
			res = byTRex[i]
		} else {
			r, err := search.Run(ctx, g, searchConfig(t))
			res = result(dut, "go", p, r, err)
			t.Logf("%s %s B via the Go generator: NDR %.3f Mpps, PDR %.3f Mpps (%d trials)", dut.Name, p.Name, res.NDR/1e6, res.PDR/1e6, len(r.Trials))
			if (*flagDebug || !res.Converged) && dut.Counters != nil {
				t.Logf("device counters:\n%s", dut.Counters())
			}
		}
		if *flagLatency > 0 && res.NDR > 0 && p.Name == "64" {
			res.Latency = append(slices.Clone(res.Latency), latency(ctx, t, g, res.NDR)...)
		}
		out = append(out, res)
	}
	return out
}

func latency(ctx context.Context, t *testing.T, g *goGen, ndr float64) []LatencyPoint {
	var pts []LatencyPoint
	for _, pct := range []int{10, 50, 90} {
		rate := ndr * float64(pct) / 100
		sent, recv, err := g.Trial(ctx, rate, *flagLatency)
		if err != nil {
			t.Errorf("latency trial at %d %% of NDR: %v", pct, err)
			continue
		}
		loss := 0.0
		if sent > 0 {
			loss = float64(sent-min(sent, recv)) / float64(sent)
		}
		l := g.last.summary()
		t.Logf("latency at %d %% of NDR (%.0f pps): p50 %.0f µs p90 %.0f µs p99 %.0f µs max %.0f µs, loss %.4f %%", pct, rate, l.P50Us, l.P90Us, l.P99Us, l.MaxUs, loss*100)
		pts = append(pts, LatencyPoint{Generator: "go", Percent: pct, Rate: rate, Loss: loss, Latency: l})
	}
	return pts
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func moduleRoot(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return wd
		}
	}
}
