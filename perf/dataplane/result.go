package dataplane

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/telcni/telcni/perf/search"
)

// Run is one suite run: what was measured and how.
type Run struct {
	Started   time.Time `json:"started"`
	Host      string    `json:"host"`
	CPUs      int       `json:"cpus"`
	Load      string    `json:"loadavg_at_start"`
	Search    Settings  `json:"search"`
	Scenarios []DUTInfo `json:"scenarios"`
	Results   []Result  `json:"results"`
	// Skipped names what could not run and why.
	Skipped []string `json:"skipped,omitempty"`
}

// Settings are the search parameters of the run.
type Settings struct {
	InitialDuration string  `json:"initial_duration"`
	FinalDuration   string  `json:"final_duration"`
	Phases          int     `json:"phases"`
	Precision       float64 `json:"precision"`
	PDRLoss         float64 `json:"pdr_loss"`
	MaxRate         float64 `json:"max_rate_pps"`
	LatencyDuration string  `json:"latency_duration"`
}

// DUTInfo describes a scenario in the report.
type DUTInfo struct {
	Name string `json:"name"`
	How  string `json:"how"`
}

// Result is one scenario at one profile.
type Result struct {
	Scenario  string  `json:"scenario"`
	Generator string  `json:"generator"`
	Profile   string  `json:"profile"`
	MeanSize  float64 `json:"mean_frame_bytes"`
	NDR       float64 `json:"ndr_pps"`
	PDR       float64 `json:"pdr_pps"`
	NDRUpper  float64 `json:"ndr_upper_pps"`
	PDRUpper  float64 `json:"pdr_upper_pps"`
	// Converged: both intervals reached the precision (or hit a limit of
	// the search range).
	Converged bool           `json:"converged"`
	Trials    []search.Trial `json:"trials"`
	// Latency at fractions of NDR (64 B): TRex's latency stream beside
	// the traffic, and the Go generator's stamped frames.
	Latency []LatencyPoint `json:"latency,omitempty"`
	Error   string         `json:"error,omitempty"`
}

// LatencyPoint is latency measured at Percent of NDR.
type LatencyPoint struct {
	Generator string  `json:"generator"`
	Percent   int     `json:"percent_of_ndr"`
	Rate      float64 `json:"rate_pps"`
	Loss      float64 `json:"loss"`
	Latency   Latency `json:"latency"`
}

func (r *Result) gbps(pps float64) float64 { return pps * (r.MeanSize + 20) * 8 / 1e9 }

// ratio is NDR(a)/NDR(b) at profile, with the same generator; ok is
// false when either is missing.
func (run *Run) ratio(a, b, profile string) (float64, bool) {
	var x, y *Result
	for i := range run.Results {
		r := &run.Results[i]
		if r.Profile != profile || r.Error != "" {
			continue
		}
		switch r.Scenario {
		case a:
			x = r
		case b:
			y = r
		}
	}
	if x == nil || y == nil || y.NDR == 0 || x.Generator != y.Generator {
		return 0, false
	}
	return x.NDR / y.NDR, true
}

// RatioLines are the lines `make perf` prints: telcni's VPP paths against
// the hand-configured xconnect, and macvlan against a veth pair, at 64 B.
func (run *Run) RatioLines() []string {
	f := func(a, b string) string {
		if v, ok := run.ratio(a, b, "64"); ok {
			return fmt.Sprintf("%.3f", v)
		}
		return "n/a"
	}
	lines := []string{fmt.Sprintf("perf-ratio vpp_l2=%s vpp_l3=%s", f("vpp-l2", "vpp-xconnect"), f("vpp-l3", "vpp-xconnect"))}
	if _, ok := run.ratio("vpp-l2-acl1000", "vpp-l2", "64"); ok {
		lines = append(lines, fmt.Sprintf("perf-ratio-acl vpp_l2_acl1000=%s", f("vpp-l2-acl1000", "vpp-l2")))
	}
	if _, ok := run.ratio("kernel-macvlan", "kernel-veth", "64"); ok {
		lines = append(lines, fmt.Sprintf("perf-ratio-kernel macvlan=%s", f("kernel-macvlan", "kernel-veth")))
	}
	return lines
}

// Write saves report.md, results.json and the plots into dir.
func (run *Run) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report dir: %w", err)
	}
	b, err := json.MarshalIndent(run, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), b, 0o644); err != nil {
		return fmt.Errorf("results.json: %w", err)
	}
	plots, err := run.plot(dir)
	if err != nil {
		return fmt.Errorf("plots: %w", err)
	}
	return os.WriteFile(filepath.Join(dir, "report.md"), []byte(run.markdown(plots)), 0o644)
}

func (run *Run) markdown(plots []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# telcni data path report, %s\n\n", run.Started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Host %s, %d CPUs, load average at start %s. Go %s.\n\n", run.Host, run.CPUs, run.Load, runtime.Version())
	s := run.Search
	fmt.Fprintf(&b, "Search: MLRsearch-style NDR (0 loss) and PDR (≤ %.2f %% loss), %d phase(s) from %s to %s trials, precision %.1f %%, max rate %.0f pps. Unidirectional, port 0 → port 1. Latency: %s trials at 10/50/90 %% of NDR.\n\n",
		s.PDRLoss*100, s.Phases, s.InitialDuration, s.FinalDuration, s.Precision*100, s.MaxRate, s.LatencyDuration)
	b.WriteString("## Scenarios\n\n| scenario | how |\n|---|---|\n")
	for _, d := range run.Scenarios {
		fmt.Fprintf(&b, "| %s | %s |\n", d.Name, d.How)
	}
	b.WriteString("\n## Ratios (same run, same generator, 64 B NDR)\n\n```\n")
	for _, l := range run.RatioLines() {
		b.WriteString(l + "\n")
	}
	b.WriteString("```\n\n## Throughput\n\n| scenario | generator | frame | NDR Mpps | NDR Gbps (L1) | PDR Mpps | trials | converged |\n|---|---|---|---|---|---|---|---|\n")
	rs := append([]Result(nil), run.Results...)
	sort.SliceStable(rs, func(i, j int) bool { return rs[i].Scenario < rs[j].Scenario })
	for _, r := range rs {
		if r.Error != "" {
			fmt.Fprintf(&b, "| %s | %s | %s | error: %s | | | | |\n", r.Scenario, r.Generator, r.Profile, strings.ReplaceAll(r.Error, "|", "/"))
			continue
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %.3f | %.2f | %.3f | %d | %v |\n", r.Scenario, r.Generator, r.Profile,
			r.NDR/1e6, r.gbps(r.NDR), r.PDR/1e6, len(r.Trials), r.Converged)
	}
	b.WriteString("\n## Latency (µs, at a fraction of the scenario's NDR)\n\nTRex: a 64 B latency stream (its own timestamps, histogram buckets of 10 µs below 100 µs, then a tenth of the decade) beside the traffic. Go generator: every frame stamped; 1 µs buckets.\n\n| scenario | generator | frame | % of NDR | rate pps | loss | p50 | p90 | p99 | max |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		for _, l := range r.Latency {
			fmt.Fprintf(&b, "| %s | %s | %s | %d | %.0f | %.4f %% | %.0f | %.0f | %.0f | %.0f |\n", r.Scenario, l.Generator, r.Profile, l.Percent, l.Rate, l.Loss*100,
				l.Latency.P50Us, l.Latency.P90Us, l.Latency.P99Us, l.Latency.MaxUs)
		}
	}
	if len(plots) > 0 {
		b.WriteString("\n## Plots\n\n")
		for _, p := range plots {
			fmt.Fprintf(&b, "![%s](%s)\n\n", p, p)
		}
	}
	if len(run.Skipped) > 0 {
		b.WriteString("## Not measured\n\n")
		for _, s := range run.Skipped {
			fmt.Fprintf(&b, "- %s\n", s)
		}
	}
	b.WriteString("\nEvery trial (rate, duration, sent, received, loss) is in results.json.\n")
	return b.String()
}
