package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// superviseCrashes restarts the agent or VPP when it exits on its own (a
// crash is a finding: the restart only lets the run finish and audit).
func (s *soak) superviseCrashes(ctx context.Context) {
	var mu sync.Mutex
	restarts := 0
	for _, p := range []*proc{s.agent, s.vpp} {
		if p == nil {
			continue
		}
		p.crashed = func(state string) {
			mu.Lock()
			defer mu.Unlock()
			s.violation("%s exited on its own (%s); log tail:\n%s", p.name, state, indent(tail(p.log, 2000)))
			if restarts++; restarts > 3 || ctx.Err() != nil {
				return
			}
			w := s.faults.begin(p.name + "-crash")
			defer s.faults.end(w)
			var err error
			if p == s.vpp {
				err = s.restartVPP(ctx)
			} else {
				err = p.start(ctx)
			}
			if err != nil {
				s.violation("restart %s after its crash: %v", p.name, err)
			}
		}
	}
}

// teardown DELs every live pod (no faults now), then GCs with an empty
// valid list: every pod whose DEL was never sent must go.
func (s *soak) teardown(ctx context.Context) {
	start := time.Now()
	var live []*pod
	for _, p := range s.slots {
		if p != nil {
			live = append(live, p)
		}
	}
	work := make(chan *pod)
	var wg sync.WaitGroup
	for range s.cfg.workers {
		wg.Add(1)
		go func() { // owned: ends when work is closed
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(s.cfg.seed), 2000))
			for p := range work {
				s.retire(rng, p, false)
			}
		}()
	}
	for _, p := range live {
		work <- p
	}
	close(work)
	wg.Wait()
	s.reg.mu.Lock()
	abandoned, inflight := len(s.reg.abandoned), len(s.reg.live)
	s.reg.mu.Unlock()
	if inflight != 0 {
		s.violation("%d pods still registered after teardown", inflight)
	}
	ok := false
	for try := 0; try < 5 && !ok; try++ {
		ok = s.gc()
		if !ok {
			time.Sleep(time.Second)
		}
	}
	if !ok {
		s.violation("the final GC failed 5 times")
	}
	fmt.Printf("soak: teardown: %d live pods DELed, %d pods without DEL collected by GC (%.1fs)\n", len(live), abandoned, time.Since(start).Seconds())
}

// audit proves nothing is left: addresses, records, links, nftables
// tables, VPP interfaces; and reads the agent's RSS.
func (s *soak) audit(ctx context.Context) {
	var allocs, records []json.RawMessage
	if err := s.client.get(ctx, "/v1/allocations", &allocs); err != nil {
		s.violation("audit: %v", err)
	} else if len(allocs) > 0 {
		s.leak("addresses held by the agent at the end (/v1/allocations)", len(allocs), trunc(fmt.Sprint(strs(allocs)), 600))
	}
	if err := s.client.get(ctx, "/v1/attachments", &records); err != nil {
		s.violation("audit: %v", err)
	} else if len(records) > 0 {
		s.leak("attachment records at the end (/v1/attachments)", len(records), trunc(fmt.Sprint(strs(records)), 600))
	}
	s.ledger.mu.Lock()
	if n := len(s.ledger.held); n > 0 {
		var l []string
		for ip, h := range s.ledger.held {
			l = append(l, ip+"@"+h.cid)
		}
		s.leak("addresses the ADD results gave and no DEL or GC freed", n, trunc(fmt.Sprint(l), 600))
	}
	s.ledger.mu.Unlock()
	links, err := linkNames(s.node)
	if err != nil {
		s.violation("audit: node links: %v", err)
	}
	var extra []string
	for _, l := range links {
		if !slices.Contains(nics, l) {
			extra = append(extra, l)
		}
	}
	if len(extra) > 0 {
		s.leak("links left in the node netns besides the stand-in NICs", len(extra), fmt.Sprint(extra))
	}
	if s.nft {
		if ts, err := nftTables(s.node); err == nil && len(ts) > 0 {
			s.leak("nftables tables in the node netns", len(ts), fmt.Sprint(ts))
		}
	}
	s.audits = append(s.audits, fmt.Sprintf("audit: addresses held %d, records %d, node links %v (stand-ins only: %v), nftables checked: %v",
		len(allocs), len(records), links, len(extra) == 0, s.nft))
	if s.cfg.vpp {
		s.auditVPP(ctx)
	}
	s.rssEnd = rssMB(s.agent.currentPID())
	s.goEnd, s.goEndOK = metricValue("http://"+s.metrics+"/metrics", "go_goroutines")
}

// auditVPP counts interfaces (other than local0) and bridge domains left
// in VPP, through the agent's CLI endpoint. Objects of pods DELed while VPP
// was down go at the agent's reconcile, so it waits up to 15 s for zero.
func (s *soak) auditVPP(ctx context.Context) {
	deadline := time.Now().Add(15 * time.Second)
	for {
		ifs, bds, err := s.vppObjects(ctx)
		if err == nil && len(ifs)+len(bds) == 0 {
			s.audits = append(s.audits, "audit: VPP interfaces besides local0: 0, bridge domains besides 0: 0")
			return
		}
		if time.Now().After(deadline) {
			if err != nil {
				s.violation("audit: VPP: %v", err)
			} else {
				s.leak("objects left in VPP (interfaces, bridge domains)", len(ifs)+len(bds), fmt.Sprintf("interfaces %v, bridge domains %v", ifs, bds))
			}
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (s *soak) vppObjects(ctx context.Context) (ifs, bds []string, err error) {
	out, err := s.client.vppCLI(ctx, "show interface")
	if err != nil {
		return nil, nil, err
	}
	for _, line := range strings.Split(out, "\n") {
		if line == "" || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		if f := strings.Fields(line); len(f) > 0 && f[0] != "local0" && f[0] != "Name" {
			ifs = append(ifs, f[0])
		}
	}
	out, err = s.client.vppCLI(ctx, "show bridge-domain")
	if err != nil {
		return nil, nil, err
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			if id, err := strconv.Atoi(f[0]); err == nil && id != 0 {
				bds = append(bds, f[0])
			}
		}
	}
	return ifs, bds, nil
}

func strs(l []json.RawMessage) []string {
	var out []string
	for _, r := range l {
		out = append(out, string(r))
	}
	return out
}

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// report prints the summary line, the counts and every finding; it
// returns whether the run is clean.
// report prints the run's counts and verdicts. It returns whether the run
// passed and, when not, the verdict lines, which main prints again after
// the agent log so that a CI log's tail says why.
func (s *soak) report() (bool, []string) {
	var verdict []string
	say := func(line string) {
		fmt.Println(line)
		verdict = append(verdict, line)
	}
	st := &s.stats
	st.mu.Lock()
	defer st.mu.Unlock()
	s.ledger.mu.Lock()
	dups := len(s.ledger.dups)
	s.ledger.mu.Unlock()
	unexplained := len(st.unexplained) + len(st.malformed)
	fmt.Println("soak: calls by verb and CNI code (0: success):")
	verbs := make([]string, 0, len(st.calls))
	for v := range st.calls {
		verbs = append(verbs, v)
	}
	sort.Strings(verbs)
	for _, v := range verbs {
		codes := make([]uint, 0, len(st.calls[v]))
		for c := range st.calls[v] {
			codes = append(codes, c)
		}
		slices.Sort(codes)
		var parts []string
		for _, c := range codes {
			parts = append(parts, fmt.Sprintf("code%d=%d", c, st.calls[v][c]))
		}
		fmt.Printf("  %-6s %s\n", v, strings.Join(parts, " "))
	}
	s.faults.mu.Lock()
	kinds := make([]string, 0, len(s.faults.counts))
	for k := range s.faults.counts {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var fparts []string
	for _, k := range kinds {
		fparts = append(fparts, fmt.Sprintf("%s=%d", k, s.faults.counts[k]))
	}
	s.faults.mu.Unlock()
	fmt.Printf("soak: faults: %s\n", strings.Join(fparts, " "))
	if len(st.explained) > 0 {
		var eparts []string
		for k, n := range st.explained {
			eparts = append(eparts, fmt.Sprintf("%s=%d", k, n))
		}
		sort.Strings(eparts)
		fmt.Printf("soak: failed calls explained by a fault: %s\n", strings.Join(eparts, " "))
	}
	if len(st.samples) > 0 {
		fmt.Println("soak: one message per failing verb and code:")
		keys := make([]string, 0, len(st.samples))
		for k := range st.samples {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Printf("  %s: %s\n", k, trunc(st.samples[k], 300))
		}
	}
	for _, a := range s.audits {
		if strings.HasPrefix(a, "VIOLATION ") {
			say("soak: " + a)
		} else {
			fmt.Println("soak: " + a)
		}
	}
	for _, k := range s.leakOrder {
		l := s.leakKinds[k]
		say(fmt.Sprintf("soak: LEAK %s: %d (e.g. %s)", k, l.n, strings.Join(l.examples, "; ")))
	}
	for i, d := range s.ledger.dups {
		if i == 20 {
			say(fmt.Sprintf("soak: ... %d more duplicates", len(s.ledger.dups)-20))
			break
		}
		say("soak: DUPLICATE " + d)
	}
	for i, u := range append(slices.Clone(st.malformed), st.unexplained...) {
		if i == 20 {
			say(fmt.Sprintf("soak: ... %d more unexplained failures", unexplained-20))
			break
		}
		say("soak: UNEXPLAINED " + u)
	}
	gor := "goroutines=n/a (the agent's /metrics has no go_goroutines)"
	if s.goStartOK && s.goEndOK {
		gor = fmt.Sprintf("goroutines_start=%.0f goroutines_end=%.0f", s.goStart, s.goEnd)
	}
	restarts := s.agent.starts - 1
	vppRestarts := 0
	if s.vpp != nil {
		vppRestarts = s.vpp.starts - 1
	}
	fmt.Printf("soak: agent RSS is of its last incarnation (%d restarts); VPP restarts %d; %s\n", restarts, vppRestarts, gor)
	say(fmt.Sprintf("soak pods=%d calls=%d faults=%d leaks=%d duplicates=%d rss_start_mb=%.1f rss_end_mb=%.1f errors=%d unexplained=%d violations=%d seed=%d",
		s.cfg.pods, st.total, s.faults.total(), s.leaks, dups, s.rssStart, s.rssEnd, st.errors, unexplained, s.violations, s.cfg.seed))
	if s.leaks == 0 && dups == 0 && unexplained == 0 && s.violations == 0 {
		return true, nil
	}
	return false, verdict
}
