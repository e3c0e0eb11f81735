package vppagent

import (
	"fmt"
	"net/http"
)

// MetricsHandler serves the pod interface counters in the Prometheus text
// format. While VPP or its stats socket is down it serves an empty set
// with telcni_vpp_up 0, so that scrapes do not fail.
func (m *Manager) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		cs, err := m.PodCounters()
		up := 1
		if err != nil {
			up = 0
			cs = nil
		}
		fmt.Fprintf(w, "# HELP telcni_vpp_up Whether the agent reads VPP's stats segment.\n# TYPE telcni_vpp_up gauge\ntelcni_vpp_up %d\n", up)
		if err := WritePrometheus(w, cs); err != nil {
			m.log.Warn("serve metrics", "err", err)
		}
	})
}
