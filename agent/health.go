package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/telcni/telcni/cni"
)

// Health endpoints for the -metrics-listen listener (kubelet probes,
// monitoring): /healthz answers while the process is alive; /readyz only
// while the agent has recovered and serves its socket, and its STATUS
// logic finds every needed path ready (VPP reachable for VPP networks),
// else 503 with the reason.

// statusConf is the config readiness runs STATUS with: pod mode, so every
// defined network counts (STATUS's own rules: a VPP network while VPP is
// down fails it).
var statusConf = json.RawMessage(`{"cniVersion":"1.1.0","name":"telcni","type":"telcni"}`)

// Readiness is the agent's STATUS for every network it defines: nil when
// each network's path can serve an ADD, else why not.
func (a *Agent) Readiness(ctx context.Context) error {
	return a.Status(ctx, &cni.Call{Command: "STATUS", Config: statusConf})
}

// SocketServing reports whether an agent answers on socket (GET /healthz):
// telcni-agent opens its socket only after Recover, so this is "recovered
// and serving" as the plugin sees it.
func SocketServing(socket string) func(context.Context) error {
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives: true,
	}}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent/healthz", nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err != nil {
			return fmt.Errorf("agent socket %s not serving: %w", socket, err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("agent socket %s: GET /healthz: %s", socket, resp.Status)
		}
		return nil
	}
}

// HealthHandler serves GET /healthz (200 "ok" while the process runs) and
// GET /readyz: 200 "ok" when serving (nil: not checked) and Readiness are
// nil, else 503 with the first reason. Mount it on both paths.
func (a *Agent) HealthHandler(serving func(context.Context) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if r.URL.Path != "/readyz" {
			_, _ = io.WriteString(w, "ok\n")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if serving != nil {
			if err := serving(ctx); err != nil {
				notReady(w, err)
				return
			}
		}
		if err := a.Readiness(ctx); err != nil {
			notReady(w, err)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
}

func notReady(w http.ResponseWriter, err error) {
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = fmt.Fprintf(w, "not ready: %v\n", err)
}
