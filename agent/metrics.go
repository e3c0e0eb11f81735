package agent

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/telcni/telcni/cni"
	"github.com/telcni/telcni/ipam"
)

// callStats counts CNI calls by command and result code, and keeps the
// histogram of their time by command and path.
type callStats struct {
	mu    sync.Mutex
	calls map[callKey]uint64
	hists map[histKey]*histogram
}

type callKey struct {
	command string
	code    uint
}

// histKey labels telcni_cni_call_seconds: the CNI command and the path(s)
// of the interfaces the call concerned ("macvlan", "macvlan+memif"; "none"
// for a call that concerned no recorded interface: STATUS, GC, an ADD
// refused before it attached anything, a DEL of nothing).
type histKey struct {
	command string
	path    string
}

// callBuckets are the upper bounds (seconds) of telcni_cni_call_seconds:
// from a millisecond (a DEL of nothing, STATUS) to a minute (the attach
// timeout), a kernel ADD lands in the 5-50 ms buckets, a VPP one in 10-250 ms.
var callBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// histogram is one Prometheus histogram series: counts per bucket (not
// cumulative; WriteMetrics sums them), the sum and the count.
type histogram struct {
	buckets []uint64 // len(callBuckets)+1: the last is +Inf
	sum     float64
	count   uint64
}

func (h *histogram) observe(v float64) {
	i := sort.SearchFloat64s(callBuckets, v) // first bound >= v
	h.buckets[i]++
	h.sum += v
	h.count++
}

func (s *callStats) observe(command string, code uint, _ time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.calls == nil {
		s.calls = map[callKey]uint64{}
	}
	s.calls[callKey{command, code}]++
}

func (s *callStats) observeTime(command, path string, took time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hists == nil {
		s.hists = map[histKey]*histogram{}
	}
	k := histKey{command, path}
	h := s.hists[k]
	if h == nil {
		h = &histogram{buckets: make([]uint64, len(callBuckets)+1)}
		s.hists[k] = h
	}
	h.observe(took.Seconds())
}

// dispatchTimed runs dispatch and observes its time in
// telcni_cni_call_seconds under the command and the paths of the
// attachment it concerned: read before the call for DEL and CHECK (a DEL
// removes the record), after it for ADD (the record it made).
func (a *Agent) dispatchTimed(ctx context.Context, call *cni.Call) *cni.Reply {
	start := time.Now()
	var path string
	if call.Command == "DEL" || call.Command == "CHECK" {
		path = a.callPaths(call)
	}
	reply := a.dispatch(ctx, call)
	took := time.Since(start)
	if call.Command == "ADD" && reply.Error == nil {
		path = a.callPaths(call)
	}
	if path == "" {
		path = "none"
	}
	a.stats.observeTime(call.Command, path, took)
	return reply
}

// callPaths names the paths of the interfaces recorded for the call's
// attachment, sorted and joined by "+"; "" when there is no record.
func (a *Agent) callPaths(call *cni.Call) string {
	if call.ContainerID == "" || call.IfName == "" {
		return ""
	}
	rec, err := a.get(recordKey(call.ContainerID, call.IfName))
	if err != nil {
		return ""
	}
	var paths []string
	for _, r := range rec.Interfaces {
		if r.Network != nil && !slices.Contains(paths, string(r.Network.Path)) {
			paths = append(paths, string(r.Network.Path))
		}
	}
	sort.Strings(paths)
	return strings.Join(paths, "+")
}

// MetricsHandler serves the agent's own metrics in the Prometheus text
// format: CNI calls by command and CNI code (0: success), the histogram of
// their time by command and path, attachments by state, and addresses held
// per network.
func (a *Agent) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		if err := a.WriteMetrics(w); err != nil {
			a.log.Warn("serve metrics", "err", err)
		}
	})
}

// WriteMetrics writes the agent's metrics (see MetricsHandler).
func (a *Agent) WriteMetrics(w io.Writer) error {
	a.stats.mu.Lock()
	keys := make([]callKey, 0, len(a.stats.calls))
	for k := range a.stats.calls {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].command != keys[j].command {
			return keys[i].command < keys[j].command
		}
		return keys[i].code < keys[j].code
	})
	fmt.Fprintln(w, "# HELP telcni_cni_calls_total CNI calls answered, by command and CNI error code (0: success).")
	fmt.Fprintln(w, "# TYPE telcni_cni_calls_total counter")
	for _, k := range keys {
		fmt.Fprintf(w, "telcni_cni_calls_total{command=%q,code=\"%d\"} %d\n", k.command, k.code, a.stats.calls[k])
	}
	hkeys := make([]histKey, 0, len(a.stats.hists))
	for k := range a.stats.hists {
		hkeys = append(hkeys, k)
	}
	sort.Slice(hkeys, func(i, j int) bool {
		if hkeys[i].command != hkeys[j].command {
			return hkeys[i].command < hkeys[j].command
		}
		return hkeys[i].path < hkeys[j].path
	})
	fmt.Fprintln(w, "# HELP telcni_cni_call_seconds Time spent answering CNI calls, by command and path (the paths of the attachment's interfaces, \"none\" for none).")
	fmt.Fprintln(w, "# TYPE telcni_cni_call_seconds histogram")
	for _, k := range hkeys {
		h := a.stats.hists[k]
		var cum uint64
		for i, le := range callBuckets {
			cum += h.buckets[i]
			fmt.Fprintf(w, "telcni_cni_call_seconds_bucket{command=%q,path=%q,le=\"%s\"} %d\n", k.command, k.path, strconv.FormatFloat(le, 'g', -1, 64), cum)
		}
		fmt.Fprintf(w, "telcni_cni_call_seconds_bucket{command=%q,path=%q,le=\"+Inf\"} %d\n", k.command, k.path, h.count)
		fmt.Fprintf(w, "telcni_cni_call_seconds_sum{command=%q,path=%q} %g\n", k.command, k.path, h.sum)
		fmt.Fprintf(w, "telcni_cni_call_seconds_count{command=%q,path=%q} %d\n", k.command, k.path, h.count)
	}
	a.stats.mu.Unlock()

	states := map[string]int{StatePending: 0, StateReady: 0}
	held := map[string]int{}
	err := a.store.View(func(tx *ipam.Tx) error {
		if err := eachRecord(tx, func(rec *Attachment) { states[rec.State]++ }); err != nil {
			return err
		}
		for _, al := range tx.Allocations() {
			held[al.Network]++
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read state: %w", err)
	}
	fmt.Fprintln(w, "# HELP telcni_attachments Attachments recorded, by state.")
	fmt.Fprintln(w, "# TYPE telcni_attachments gauge")
	for _, s := range []string{StatePending, StateReady} {
		fmt.Fprintf(w, "telcni_attachments{state=%q} %d\n", s, states[s])
	}
	nets := make([]string, 0, len(held))
	for n := range held {
		nets = append(nets, n)
	}
	sort.Strings(nets)
	fmt.Fprintln(w, "# HELP telcni_ipam_addresses_held Addresses held, by network.")
	fmt.Fprintln(w, "# TYPE telcni_ipam_addresses_held gauge")
	for _, n := range nets {
		fmt.Fprintf(w, "telcni_ipam_addresses_held{network=%q} %d\n", n, held[n])
	}
	return nil
}
