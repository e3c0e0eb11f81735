package main

import (
	"context"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/telcni/telcni/agent"
	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/internal/agenttest"
	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/netsource"
	"github.com/telcni/telcni/vppagent"
	"github.com/telcni/telcni/vppagent/vpptest"
)

const fastNet = `{"name":"fast","path":"memif","ipam":{"subnets":[{"cidr":"10.61.0.0/24","gateway":"10.61.0.1"}]}}`

// The pod view of a memif interface shows VPP's side: sw_if_index, name,
// tag, socket and counters; vpp passes a command through.
func TestVPPPodView(t *testing.T) {
	v := vpptest.Start(t, vpptest.Options{})
	m, err := vppagent.NewManager(vppagent.Config{
		Conn:   vppagent.ConnConfig{APISocket: v.APISocket, StatsSocket: v.StatsSocket, PingInterval: 200 * time.Millisecond},
		RunDir: filepath.Join(t.TempDir(), "run"), Logger: agenttest.Log(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	p := vppagent.NewPath(m)
	a := agent.New(agent.Config{Store: agenttest.Store(t), Networks: netsource.NewDir(agenttest.NetworkDir(t, map[string]string{"fast.json": fastNet})),
		Log: agenttest.Log(), Paths: map[api.PathKind]attach.Path{api.PathMemif: p}})
	if err := a.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); m.Ready() != nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("VPP not ready: %v", m.Ready())
		}
	}
	// Served as telcni-agent serves it: the agent's API plus VPP's CLI.
	socket := filepath.Join(t.TempDir(), "agent.sock")
	l, err := agent.Listen(socket)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", a.Handler())
	mux.Handle("POST "+vppagent.CLIPath, vppagent.CLIHandler(m))
	srv := &http.Server{Handler: mux}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()); <-served })
	n := &node{agent: a, socket: socket}

	n.add(t, pod{ns: "ran", name: "cnf-0", cid: "cid-cnf-0", netns: netnstest.New(t)}, `fast@mif0`)
	var out string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out = n.mustCtl(t, "pod", "ran/cnf-0")
		if strings.Contains(out, "counters:") || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("telcnictl pod ran/cnf-0:\n%s", out)
	for _, re := range []string{
		`mif0  network fast  path memif  state ready`,
		`vpp        name: memif[0-9]+/0`,
		`swIfIndex: [1-9][0-9]*`,
		`tag: telcni:cid-cnf-0:mif0`,
		`adminUp: true`,
		`socket: abstract:telcni-cid-cnf-0-mif0,netns_name=/var/run/netns/`,
		`counters: drops [0-9]+  rxBytes [0-9]+  rxErrors [0-9]+  rxPackets [0-9]+  txBytes [0-9]+`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("pod view lacks %s:\n%s", re, out)
		}
	}
	if strings.Contains(out, "error") {
		t.Errorf("pod view has errors:\n%s", out)
	}
	if out := n.mustCtl(t, "vpp", "show", "interface"); !strings.Contains(out, "memif") {
		t.Errorf("vpp show interface:\n%s", out)
	}
	if out := n.mustCtl(t, "networks"); !regexp.MustCompile(`fast +memif +yes +vpp +10.61.0.0/24 +ran/cnf-0 +10.61.0.`).MatchString(out) {
		t.Errorf("networks:\n%s", out)
	}
	golden(t, "check-vpp", n.mustCtl(t, "check", "ran/cnf-0"))

	// The audit finds the memif in VPP; a trace of it (no traffic here:
	// vppagent's TestVPPTracePodInterface pings) names VPP's interface and
	// ends at its wait; "vpp trace add ..." still reaches VPP's CLI.
	if out, errs, _ := n.ctl(t, "ipam", "--audit"); !regexp.MustCompile(`ran/cnf-0 +cid-cnf-0/eth0 +mif0 +fast +memif +10.61.0.[0-9]+ +LIVE`).MatchString(out) {
		t.Errorf("ipam --audit:\n%s%s", out, errs)
	}
	out = n.mustCtl(t, "vpp", "trace", "ran/cnf-0", "mif0", "-n", "1", "--duration", "500ms")
	if !regexp.MustCompile(`Trace of ran/cnf-0 mif0: VPP memif[0-9]+/0 \(sw_if_index [1-9][0-9]*, tag telcni:cid-cnf-0:mif0\), node memif-input\n0 of the 1 packets asked for arrived`).MatchString(out) {
		t.Errorf("vpp trace:\n%s", out)
	}
	if _, errs, st := n.ctl(t, "vpp", "trace", "ran/cnf-0", "nosuch"); st != 1 || !strings.Contains(errs, "pod ran/cnf-0 has no interface nosuch (it has mif0)") {
		t.Errorf("vpp trace of an unknown interface: %d %s", st, errs)
	}
	n.mustCtl(t, "vpp", "trace", "add", "memif-input", "1")
	if out := n.mustCtl(t, "vpp", "show", "trace"); strings.Contains(out, "unknown") {
		t.Errorf("vpp trace add passthrough:\n%s", out)
	}
	n.mustCtl(t, "vpp", "clear", "trace")
}
