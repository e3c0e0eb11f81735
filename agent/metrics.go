package agent

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/telcni/telcni/ipam"
)

// callStats counts CNI calls by command and result code, and their time.
type callStats struct {
	mu      sync.Mutex
	calls   map[callKey]uint64
	seconds map[string]float64
	count   map[string]uint64
}

type callKey struct {
	command string
	code    uint
}

func (s *callStats) observe(command string, code uint, took time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.calls == nil {
		s.calls, s.seconds, s.count = map[callKey]uint64{}, map[string]float64{}, map[string]uint64{}
	}
	s.calls[callKey{command, code}]++
	s.seconds[command] += took.Seconds()
	s.count[command]++
}

// MetricsHandler serves the agent's own metrics in the Prometheus text
// format: CNI calls by command and CNI code (0: success), time spent per
// command, attachments by state, and addresses held per network.
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
	cmds := make([]string, 0, len(a.stats.count))
	for c := range a.stats.count {
		cmds = append(cmds, c)
	}
	sort.Strings(cmds)
	fmt.Fprintln(w, "# HELP telcni_cni_call_seconds Time spent answering CNI calls, by command.")
	fmt.Fprintln(w, "# TYPE telcni_cni_call_seconds summary")
	for _, c := range cmds {
		fmt.Fprintf(w, "telcni_cni_call_seconds_sum{command=%q} %g\n", c, a.stats.seconds[c])
		fmt.Fprintf(w, "telcni_cni_call_seconds_count{command=%q} %d\n", c, a.stats.count[c])
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
