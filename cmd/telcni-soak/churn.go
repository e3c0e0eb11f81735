package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// pod is one container (sandbox) incarnation of a pod slot.
type pod struct {
	slot, gen int
	cid       string
	nsName    string
	netns     string
	args      string
	fixed     string // fixed address on soak-a, or ""
	memif     bool
	ips       []string // addresses the ADD results gave it
	netnsGone bool
}

// registry knows which attachments are valid for CNI GC: every pod that
// is live or has a call in flight. A GC holds gate exclusively while it
// runs, so no pod registered after its valid list was made can be ADDed
// meanwhile (a runtime lists in-flight sandboxes as valid too).
type registry struct {
	gate      sync.RWMutex
	mu        sync.Mutex
	live      map[string]*pod
	abandoned []*pod
}

// holding is who holds one address, from the ADD results.
type holding struct {
	cid       string
	releasing bool // a DEL, GC or failed retry is freeing it
}

// ledger tracks every address handed out; a second live holder of an
// address is a duplicate.
type ledger struct {
	mu   sync.Mutex
	held map[string]*holding
	dups []string
}

func (l *ledger) add(p *pod, ips []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ip := range ips {
		if h := l.held[ip]; h != nil && h.cid != p.cid && !h.releasing {
			l.dups = append(l.dups, fmt.Sprintf("%s given to %s while %s holds it", ip, p.cid, h.cid))
		}
		l.held[ip] = &holding{cid: p.cid}
		if !slices.Contains(p.ips, ip) {
			p.ips = append(p.ips, ip)
		}
	}
}

func (l *ledger) releasing(p *pod) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ip := range p.ips {
		if h := l.held[ip]; h != nil && h.cid == p.cid {
			h.releasing = true
		}
	}
}

func (l *ledger) drop(p *pod) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ip := range p.ips {
		if h := l.held[ip]; h != nil && h.cid == p.cid {
			delete(l.held, ip)
		}
	}
}

// fixedPool hands out soak-a's fixed addresses; one comes back only when
// its holder is known to be freed.
type fixedPool struct {
	mu   sync.Mutex
	free []string
}

func (f *fixedPool) take(rng *rand.Rand) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.free) == 0 {
		return ""
	}
	i := rng.IntN(len(f.free))
	ip := f.free[i]
	f.free[i] = f.free[len(f.free)-1]
	f.free = f.free[:len(f.free)-1]
	return ip
}

func (f *fixedPool) put(ip string) {
	if ip == "" {
		return
	}
	f.mu.Lock()
	f.free = append(f.free, ip)
	f.mu.Unlock()
}

// faultLog records the global faults as time windows: a failed call that
// overlaps one (plus a grace for recovery) is explained by it.
type faultLog struct {
	mu      sync.Mutex
	windows []window
	counts  map[string]int
}

type window struct {
	kind       string
	start, end time.Time // end zero: still on
}

var grace = map[string]time.Duration{
	"agent-kill": 1 * time.Second,
	"vpp-kill":   3 * time.Second, // the agent reconnects and reconciles
	"tmpfs-full": 500 * time.Millisecond,
}

func (f *faultLog) count(kind string) {
	f.mu.Lock()
	f.counts[kind]++
	f.mu.Unlock()
}

func (f *faultLog) begin(kind string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counts[kind]++
	f.windows = append(f.windows, window{kind: kind, start: time.Now()})
	return len(f.windows) - 1
}

func (f *faultLog) end(i int) {
	f.mu.Lock()
	f.windows[i].end = time.Now()
	f.mu.Unlock()
}

func (f *faultLog) explain(start, end time.Time) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.windows) - 1; i >= 0; i-- {
		w := f.windows[i]
		wend := w.end
		if wend.IsZero() {
			wend = time.Now()
		}
		if !start.After(wend.Add(grace[w.kind])) && !end.Before(w.start) {
			return w.kind
		}
	}
	return ""
}

func (f *faultLog) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.counts {
		n += c
	}
	return n
}

// churn runs the workers and the fault injector until ctx ends (or
// -cycles ADDs), then returns with every worker idle and every fault
// undone (the agent and VPP up, the tmpfs emptied).
func (s *soak) churn(ctx context.Context) {
	slots := make([]*pod, s.cfg.pods)
	gens := make([]int, s.cfg.pods)
	queue := make(chan int, s.cfg.pods)
	for _, i := range rand.New(rand.NewPCG(uint64(s.cfg.seed), 0)).Perm(s.cfg.pods) {
		queue <- i
	}
	wctx, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()
	fctx, stopFaults := context.WithCancel(context.Background())
	faultsDone := make(chan struct{})
	go func() { defer close(faultsDone); s.injectFaults(fctx, stopWorkers) }() // owned: stopped below
	start := time.Now()
	var wg sync.WaitGroup
	for w := range s.cfg.workers {
		wg.Add(1)
		go func() { // owned: ends with wctx
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(s.cfg.seed), uint64(w+1)))
			for wctx.Err() == nil {
				slot := <-queue
				if p := slots[slot]; p != nil {
					s.retire(rng, p, true)
					slots[slot] = nil
				}
				if wctx.Err() == nil && s.takeCycle(stopWorkers) {
					gens[slot]++
					if p := s.newPod(rng, slot, gens[slot]); p != nil && s.addPod(rng, p) {
						slots[slot] = p
					}
				}
				queue <- slot
			}
		}()
	}
	wg.Wait()
	stopFaults()
	<-faultsDone
	fmt.Printf("soak: churn ended after %.1fs: %d pod ADDs\n", time.Since(start).Seconds(), s.adds)
	s.slots = slots
}

func (s *soak) takeCycle(stop func()) bool {
	s.addsMu.Lock()
	defer s.addsMu.Unlock()
	if s.cfg.cycles > 0 && s.adds >= int64(s.cfg.cycles) {
		stop()
		return false
	}
	s.adds++
	return true
}

func (s *soak) newPod(rng *rand.Rand, slot, gen int) *pod {
	p := &pod{slot: slot, gen: gen, cid: fmt.Sprintf("soak%d-p%d-g%d", os.Getpid(), slot, gen),
		nsName: fmt.Sprintf("tcsoak%d-p%d-%d", os.Getpid(), slot, gen), memif: s.cfg.vpp && slot%3 != 0}
	p.args = fmt.Sprintf("IgnoreUnknown=1;K8S_POD_NAMESPACE=soak;K8S_POD_NAME=pod-%d;K8S_POD_INFRA_CONTAINER_ID=%s", slot, p.cid)
	if rng.IntN(4) == 0 {
		p.fixed = s.fixed.take(rng)
	}
	s.reg.gate.RLock()
	s.reg.mu.Lock()
	s.reg.live[p.cid] = p
	s.reg.mu.Unlock()
	s.reg.gate.RUnlock()
	var err error
	if p.netns, err = s.ns.create(p.nsName); err != nil {
		s.violation("create pod netns %s: %v", p.nsName, err)
		s.forget(p)
		return nil
	}
	return p
}

func (s *soak) forget(p *pod) {
	s.reg.mu.Lock()
	delete(s.reg.live, p.cid)
	s.reg.mu.Unlock()
	s.fixed.put(p.fixed)
}

func (s *soak) violation(format string, args ...any) {
	s.stats.mu.Lock()
	s.violations++
	s.audits = append(s.audits, "VIOLATION "+fmt.Sprintf(format, args...))
	s.stats.mu.Unlock()
}

// leak counts n leaked objects of one kind, keeping a few examples.
func (s *soak) leak(kind string, n int, example string) {
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	s.leaks += n
	l := s.leakKinds[kind]
	if l == nil {
		l = &leakKind{}
		s.leakKinds[kind] = l
		s.leakOrder = append(s.leakOrder, kind)
	}
	l.n += n
	if len(l.examples) < 3 {
		l.examples = append(l.examples, example)
	}
}

type leakKind struct {
	n        int
	examples []string
}

// resultIPs returns the addresses of an ADD result, without prefix length.
func resultIPs(out []byte) ([]string, error) {
	var res struct {
		Interfaces []struct {
			Name string `json:"name"`
		} `json:"interfaces"`
		IPs []struct {
			Address   string `json:"address"`
			Interface *int   `json:"interface"`
		} `json:"ips"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, fmt.Errorf("ADD result %q: %w", out, err)
	}
	var ips []string
	for _, ip := range res.IPs {
		a, _, _ := strings.Cut(ip.Address, "/")
		ips = append(ips, a)
	}
	return ips, nil
}

// addPod ADDs p (sometimes twice, sometimes followed by CHECK); a failed
// ADD is DELed as a runtime does. It reports whether p is live.
func (s *soak) addPod(rng *rand.Rand, p *pod) bool {
	ctx := context.Background()
	conf := s.podConf(p)
	r := s.plugin(ctx, "ADD", p.cid, p.netns, p.args, conf)
	s.record("ADD", r, "")
	if r.code != 0 || r.bad != "" {
		s.retire(rng, p, false)
		return false
	}
	if !s.took(p, r.out) {
		s.retire(rng, p, false)
		return false
	}
	if rng.IntN(10) == 0 { // the runtime repeats the ADD
		s.faults.count("dup-add")
		before := slices.Clone(p.ips)
		r := s.plugin(ctx, "ADD", p.cid, p.netns, p.args, conf)
		s.record("ADD", r, "")
		if r.code != 0 || r.bad != "" {
			s.ledger.releasing(p) // a failed retry undoes the attachment
			s.retire(rng, p, false)
			return false
		}
		if !s.took(p, r.out) {
			s.retire(rng, p, false)
			return false
		}
		if !slices.Equal(before, p.ips) {
			s.violation("repeated ADD of %s changed its addresses: %v -> %v", p.cid, before, p.ips)
		}
	}
	if rng.IntN(3) == 0 {
		s.faults.count("check")
		r := s.plugin(ctx, "CHECK", p.cid, p.netns, p.args, conf)
		s.record("CHECK", r, "")
	}
	return true
}

// took records the addresses an ADD result gave p.
func (s *soak) took(p *pod, out []byte) bool {
	ips, err := resultIPs(out)
	if err != nil {
		s.violation("%v", err)
		return false
	}
	want := 2
	if p.memif {
		want = 3
	}
	if len(ips) != want {
		s.violation("ADD %s: %d addresses in the result, want %d: %s", p.cid, len(ips), want, out)
	}
	if p.fixed != "" && !slices.Contains(ips, p.fixed) {
		s.violation("ADD %s asked for %s on soak-a, got %v", p.cid, p.fixed, ips)
	}
	s.ledger.add(p, ips)
	return true
}

// retire ends p: as a runtime would (DEL, then the netns goes), or, when
// faults are on, with the netns deleted before DEL, or with no DEL at all
// (left for GC).
func (s *soak) retire(rng *rand.Rand, p *pod, faults bool) {
	if faults {
		switch u := rng.IntN(100); {
		case u < 5:
			s.faults.count("no-del")
			s.reg.mu.Lock()
			delete(s.reg.live, p.cid)
			s.reg.abandoned = append(s.reg.abandoned, p)
			s.reg.mu.Unlock()
			return
		case u < 15:
			s.faults.count("netns-deleted")
			if err := s.ns.remove(p.nsName); err != nil {
				s.violation("delete netns %s: %v", p.nsName, err)
			}
			p.netnsGone = true
		}
	}
	if !s.del(p) {
		s.leak("DEL never succeeded (addresses may stay held)", 1, fmt.Sprintf("%s %v", p.cid, p.ips))
		p.fixed = "" // not handed out again
	}
	s.podNetnsClean(p, "DEL")
	s.forget(p)
}

// del sends DEL until it succeeds (a runtime retries), for up to a minute.
func (s *soak) del(p *pod) bool {
	s.ledger.releasing(p)
	deadline := time.Now().Add(time.Minute)
	for {
		r := s.plugin(context.Background(), "DEL", p.cid, p.netns, p.args, s.podConf(p))
		s.record("DEL", r, "")
		if r.code == 0 && r.bad == "" {
			s.ledger.drop(p)
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// podNetnsClean checks that no link and no nftables table of telcni is
// left in p's netns (when it still exists), then deletes it.
func (s *soak) podNetnsClean(p *pod, after string) {
	if p.netnsGone {
		return
	}
	links, err := linkNames(p.netns)
	if err != nil {
		s.violation("list links of %s: %v", p.nsName, err)
	} else if len(links) > 0 {
		s.leak("pod links left in the pod's netns after "+after, len(links), fmt.Sprintf("%s: %v", p.cid, links))
	}
	if s.nft {
		if ts, err := nftTables(p.netns); err == nil && len(ts) > 0 {
			s.leak("nftables tables left in the pod's netns after "+after, len(ts), fmt.Sprintf("%s: %v", p.cid, ts))
		}
	}
	if err := s.ns.remove(p.nsName); err != nil {
		s.violation("delete netns %s: %v", p.nsName, err)
	}
	p.netnsGone = true
}

// gc sends CNI GC with every live or in-flight attachment as valid; the
// abandoned pods (no DEL) must be freed by it.
func (s *soak) gc() bool {
	s.reg.gate.Lock()
	s.reg.mu.Lock()
	valid := make([]string, 0, len(s.reg.live))
	for cid := range s.reg.live {
		valid = append(valid, cid)
	}
	abandoned := s.reg.abandoned
	s.reg.abandoned = nil
	s.reg.mu.Unlock()
	for _, p := range abandoned {
		s.ledger.releasing(p)
	}
	r := s.plugin(context.Background(), "GC", "", "", "", s.gcConf(valid))
	s.reg.gate.Unlock()
	s.record("GC", r, "")
	if r.code != 0 || r.bad != "" {
		s.reg.mu.Lock()
		s.reg.abandoned = append(s.reg.abandoned, abandoned...)
		s.reg.mu.Unlock()
		return false
	}
	for _, p := range abandoned {
		s.ledger.drop(p)
		s.podNetnsClean(p, "GC")
		s.fixed.put(p.fixed)
	}
	return true
}

// injectFaults runs one global fault at a time, every 1.5-4 s, each kind
// in turn in a shuffled order, until ctx ends. A fault it cannot undo
// (the agent or VPP does not come back) stops the churn.
func (s *soak) injectFaults(ctx context.Context, stopChurn func()) {
	rng := rand.New(rand.NewPCG(uint64(s.cfg.seed), 1000))
	kinds := []string{"gc", "tmpfs-full", "agent-kill"}
	if s.cfg.vpp {
		kinds = append(kinds, "vpp-kill")
	}
	bg := context.Background()
	for round := 0; ; round++ {
		order := rng.Perm(len(kinds))
		if round == 0 { // every kind once early, in a fixed order
			order = order[:0]
			for i := range kinds {
				order = append(order, i)
			}
		}
		for _, i := range order {
			select {
			case <-ctx.Done():
				return
			case <-time.After(1500*time.Millisecond + time.Duration(rng.IntN(2500))*time.Millisecond):
			}
			kind := kinds[i]
			t0 := time.Now()
			if s.cfg.verbose {
				fmt.Printf("soak: fault %s\n", kind)
			}
			var err error
			switch kind {
			case "agent-kill":
				w := s.faults.begin(kind)
				s.agent.kill()
				if err = s.agent.start(bg); err == nil && s.cfg.vpp {
					err = s.waitAgentVPP(bg)
				}
				s.faults.end(w)
			case "vpp-kill":
				w := s.faults.begin(kind)
				s.vpp.kill()
				if err = s.restartVPP(bg); err == nil {
					t := time.Now()
					if err = s.waitAgentVPP(bg); err == nil && time.Since(t) > 20*time.Second {
						s.violation("the agent reached the restarted VPP only after %.1fs (its backoff is at most 5 s)", time.Since(t).Seconds())
					}
				}
				s.faults.end(w)
			case "tmpfs-full":
				w := s.faults.begin(kind)
				fill := filepath.Join(s.stateDir, "fill")
				if _, ferr := fillTmpfs(fill); ferr != nil {
					err = fmt.Errorf("fill the state tmpfs: %w", ferr)
				}
				time.Sleep(500*time.Millisecond + time.Duration(rng.IntN(1000))*time.Millisecond)
				_ = os.Remove(fill)
				s.faults.end(w)
			case "gc":
				s.faults.count(kind)
				s.gc()
			}
			if s.cfg.verbose {
				fmt.Printf("soak: fault %s done (%.1fs)\n", kind, time.Since(t0).Seconds())
			}
			if err != nil {
				s.violation("fault %s not undone: %v", kind, err)
				stopChurn()
				return
			}
		}
	}
}
