package agent

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// get fetches path from srv and returns the status and body.
func get(t *testing.T, srv *httptest.Server, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// metricsServer serves a's metrics and health endpoints as telcni-agent's
// -metrics-listen does.
func metricsServer(t *testing.T, a *Agent, serving func(context.Context) error) *httptest.Server {
	mux := http.NewServeMux()
	mux.Handle("/metrics", a.MetricsHandler())
	h := a.HealthHandler(serving)
	mux.Handle("GET /healthz", h)
	mux.Handle("GET /readyz", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// After an ADD, /metrics has telcni_cni_call_seconds as a histogram by
// command and path: cumulative buckets ending in +Inf = count.
func TestMetricsCallHistogram(t *testing.T) {
	e := newEnv(t)
	srv := metricsServer(t, e.agent, nil)
	p := e.pod("hist")
	e.mustAdd(p, "eth0", podConf(`fronthaul`))
	if r := e.call("CHECK", p, "eth0", podConf(`fronthaul`)); r.Error != nil {
		t.Fatalf("CHECK: %+v", r.Error)
	}
	e.call("DEL", p, "eth0", podConf(`fronthaul`))
	e.call("DEL", p, "eth0", podConf(`fronthaul`)) // of nothing: path none
	code, out := get(t, srv, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d\n%s", code, out)
	}
	if !strings.Contains(out, "# TYPE telcni_cni_call_seconds histogram\n") {
		t.Errorf("no histogram TYPE line:\n%s", out)
	}
	for _, want := range []string{
		`telcni_cni_call_seconds_bucket{command="ADD",path="macvlan",le="0.001"} `,
		`telcni_cni_call_seconds_bucket{command="ADD",path="macvlan",le="0.1"} `,
		`telcni_cni_call_seconds_bucket{command="ADD",path="macvlan",le="60"} 1`,
		`telcni_cni_call_seconds_bucket{command="ADD",path="macvlan",le="+Inf"} 1`,
		`telcni_cni_call_seconds_count{command="ADD",path="macvlan"} 1`,
		`telcni_cni_call_seconds_count{command="CHECK",path="macvlan"} 1`,
		`telcni_cni_call_seconds_count{command="DEL",path="macvlan"} 1`,
		`telcni_cni_call_seconds_count{command="DEL",path="none"} 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q:\n%s", want, out)
		}
	}
	// Buckets are cumulative and in order.
	re := regexp.MustCompile(`(?m)^telcni_cni_call_seconds_bucket\{command="ADD",path="macvlan",le="([^"]+)"\} (\d+)$`)
	ms := re.FindAllStringSubmatch(out, -1)
	if len(ms) != len(callBuckets)+1 {
		t.Fatalf("ADD buckets: %d, want %d", len(ms), len(callBuckets)+1)
	}
	last := uint64(0)
	for i, m := range ms {
		n, _ := strconv.ParseUint(m[2], 10, 64)
		if n < last {
			t.Errorf("bucket le=%s: %d < previous %d", m[1], n, last)
		}
		last = n
		if i < len(callBuckets) && m[1] != strconv.FormatFloat(callBuckets[i], 'g', -1, 64) {
			t.Errorf("bucket %d is le=%s", i, m[1])
		}
	}
	if !regexp.MustCompile(`telcni_cni_call_seconds_sum\{command="ADD",path="macvlan"\} [0-9.e-]+\n`).MatchString(out) {
		t.Errorf("no ADD sum:\n%s", out)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	e := newEnv(t)
	serving := errors.New("agent socket /x.sock not serving: connection refused")
	var servingErr error
	srv := metricsServer(t, e.agent, func(context.Context) error { return servingErr })
	if code, body := get(t, srv, "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get(t, srv, "/readyz"); code != 200 || body != "ok\n" {
		t.Errorf("/readyz: %d %q", code, body)
	}
	servingErr = serving
	if code, body := get(t, srv, "/readyz"); code != 503 || !strings.Contains(body, "not ready: agent socket /x.sock not serving") {
		t.Errorf("/readyz while not serving: %d %q", code, body)
	}
	if code, _ := get(t, srv, "/healthz"); code != 200 {
		t.Errorf("/healthz while not serving: %d", code)
	}
}

// SocketServing is true once an agent answers on the socket.
func TestSocketServing(t *testing.T) {
	e := newEnv(t)
	sock := filepath.Join(t.TempDir(), "agent.sock")
	probe := SocketServing(sock)
	if err := probe(context.Background()); err == nil || !strings.Contains(err.Error(), sock) {
		t.Errorf("no agent yet: %v", err)
	}
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: e.agent.Handler()}
	done := make(chan struct{})
	go func() { defer close(done); _ = hs.Serve(l) }()
	t.Cleanup(func() { _ = hs.Shutdown(context.Background()); <-done })
	if err := probe(context.Background()); err != nil {
		t.Errorf("serving agent: %v", err)
	}
}

// A VPP network while VPP is unreachable: not ready, naming the network
// and the socket (STATUS's reason).
func TestReadinessVPPDown(t *testing.T) {
	sock := "/nonexistent/vpp/api.sock"
	a, _ := vppAgent(t, sock)
	srv := metricsServer(t, a, nil)
	code, body := get(t, srv, "/readyz")
	if code != 503 || !strings.Contains(body, "network fast") || !strings.Contains(body, sock) {
		t.Errorf("/readyz with VPP down: %d %q", code, body)
	}
	if code, _ := get(t, srv, "/healthz"); code != 200 {
		t.Errorf("/healthz with VPP down: %d", code)
	}
}
