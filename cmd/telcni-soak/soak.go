package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/telcni/telcni/agent"
	"github.com/telcni/telcni/api"
)

type soak struct {
	cfg                  config
	work, node, stateDir string
	socket, metrics      string
	vppDir               string
	nft                  bool
	ns                   *namespaces
	agent, vpp           *proc
	client               *agentClient
	rssStart, rssEnd     float64
	goStart, goEnd       float64
	goStartOK, goEndOK   bool
	pluginTimeout        time.Duration
	faults               faultLog
	stats                stats
	ledger               ledger
	reg                  registry
	fixed                fixedPool
	audits               []string // audit lines printed in the report
	leaks, violations    int
	adds                 int64 // ADD attempts of new pods (for -cycles)
	addsMu               sync.Mutex
	slots                []*pod
	leakKinds            map[string]*leakKind
	leakOrder            []string
}

func newSoak(c config, work string) *soak {
	s := &soak{cfg: c, work: work, ns: &namespaces{names: map[string]bool{}}, pluginTimeout: 2 * time.Minute}
	s.stats.calls = map[string]map[uint]int{}
	s.stats.explained = map[string]int{}
	s.stats.samples = map[string]string{}
	s.leakKinds = map[string]*leakKind{}
	s.faults.counts = map[string]int{}
	s.ledger.held = map[string]*holding{}
	s.reg.live = map[string]*pod{}
	// Fixed addresses 10.80.0.10-10.80.0.250, outside soak-a's dynamic range.
	for i := 10; i <= 250; i++ {
		s.fixed.free = append(s.fixed.free, fmt.Sprintf("10.80.0.%d", i))
	}
	return s
}

// Networks: soak-a and soak-b are macvlan on the two stand-in NICs; soak-a
// has fixed addresses below its dynamic range; soak-m is memif through VPP.
func (s *soak) writeNetworks() error {
	dir := filepath.Join(s.work, "networks")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fw := ""
	if s.nft {
		fw = `,"firewall":[{"direction":"ingress","action":"accept","protocol":"udp","ports":[5000,5001]},{"direction":"ingress","action":"drop","protocol":"tcp","cidr":"192.0.2.0/24"}]`
	}
	files := map[string]string{
		"a.json": `{"name":"soak-a","path":"macvlan","master":"nic0","mode":"bridge","ipam":{"subnets":[{"cidr":"10.80.0.0/21","rangeStart":"10.80.1.0","gateway":"10.80.0.1"}]}}`,
		"b.json": `{"name":"soak-b","path":"macvlan","master":"nic1","mode":"bridge","ipam":{"subnets":[{"cidr":"10.81.0.0/21","gateway":"10.81.0.1"}]}` + fw + `}`,
	}
	if s.cfg.vpp {
		files["m.json"] = `{"name":"soak-m","path":"memif","mode":"ethernet","ipam":{"subnets":[{"cidr":"10.82.0.0/21","gateway":"10.82.0.1"}]}}`
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (s *soak) startVPP(ctx context.Context, bin string) error {
	dir, err := os.MkdirTemp("", "tcsv") // VPP's socket paths: keep short
	if err != nil {
		return err
	}
	s.vppDir = dir
	conf, err := writeVPPConf(dir)
	if err != nil {
		return err
	}
	api := filepath.Join(dir, "api.sock")
	s.vpp = &proc{name: "vpp", argv: []string{bin, "-c", conf}, log: filepath.Join(dir, "vpp.out"),
		ready: func(ctx context.Context, p *proc) error {
			c, err := (&net.Dialer{}).DialContext(ctx, "unix", api)
			if err != nil {
				return err
			}
			return c.Close()
		}}
	return s.restartVPP(ctx)
}

func (s *soak) restartVPP(ctx context.Context) error {
	t0 := time.Now()
	_ = os.Remove(filepath.Join(s.vppDir, "api.sock"))
	_ = os.Remove(filepath.Join(s.vppDir, "stats.sock"))
	err := s.vpp.start(ctx)
	if s.cfg.verbose {
		fmt.Printf("soak: VPP (re)started in %.1fs (%v)\n", time.Since(t0).Seconds(), err)
	}
	return err
}

func (s *soak) startAgent(ctx context.Context) error {
	var err error
	if s.metrics, err = freeLoopbackPort(); err != nil {
		return err
	}
	s.socket = filepath.Join(s.work, "agent.sock")
	s.client = newAgentClient(s.socket)
	vppDir := s.vppDir
	if vppDir == "" {
		vppDir = filepath.Join(s.work, "no-vpp")
	}
	s.agent = &proc{name: "telcni-agent", log: filepath.Join(s.work, "agent.log"),
		argv: []string{filepath.Join(s.cfg.binDir, "telcni-agent"), "-socket", s.socket, "-state-dir", s.stateDir, "-legacy-state-dir", "",
			"-networks-dir", filepath.Join(s.work, "networks"), "-host-netns", s.node, "-run-dir", filepath.Join(s.work, "run"),
			"-vpp-api-socket", filepath.Join(vppDir, "api.sock"), "-vpp-stats-socket", filepath.Join(vppDir, "stats.sock"),
			"-metrics-listen", s.metrics, "-cni-bin-dir", s.cfg.binDir, "-cni-conf-dir", filepath.Join(s.work, "cni-conf"),
			"-log-level", "info"},
		ready: func(ctx context.Context, p *proc) error { return s.client.get(ctx, "/healthz", nil) }}
	if err := s.agent.start(ctx); err != nil {
		return err
	}
	if s.cfg.vpp {
		return s.waitAgentVPP(ctx)
	}
	return nil
}

// waitAgentVPP waits until the agent reaches VPP (its CLI answers).
func (s *soak) waitAgentVPP(ctx context.Context) error {
	deadline := time.Now().Add(90 * time.Second)
	for {
		t0 := time.Now()
		_, err := s.client.vppCLI(ctx, "show version")
		if err == nil {
			return nil
		}
		if s.cfg.verbose && time.Since(t0) > time.Second {
			fmt.Printf("soak: agent -> VPP not yet (%.1fs): %v\n", time.Since(t0).Seconds(), err)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the agent does not reach VPP: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// callResult is one plugin run: code 0 is success.
type callResult struct {
	code   uint
	msg    string
	out    []byte
	bad    string // the failure is not a well-formed CNI error: why
	start  time.Time
	end    time.Time
	detail string
}

// plugin runs the telcni binary as a runtime does: CNI_* env, config on stdin.
func (s *soak) plugin(ctx context.Context, command, cid, netnsPath, args, conf string) callResult {
	ctx, cancel := context.WithTimeout(ctx, s.pluginTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.cfg.binDir, "telcni"))
	cmd.Env = []string{"CNI_COMMAND=" + command, "CNI_CONTAINERID=" + cid, "CNI_NETNS=" + netnsPath,
		"CNI_IFNAME=eth0", "CNI_ARGS=" + args, "CNI_PATH=" + s.cfg.binDir}
	if command == "GC" || command == "STATUS" {
		cmd.Env = []string{"CNI_COMMAND=" + command, "CNI_PATH=" + s.cfg.binDir}
	}
	cmd.Stdin = strings.NewReader(conf)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	r := callResult{start: time.Now()}
	err := cmd.Run()
	r.end = time.Now()
	r.out = out.Bytes()
	if err == nil {
		return r
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		r.code, r.bad = 999, fmt.Sprintf("plugin did not run: %v", err)
		return r
	}
	var e struct {
		Code    *uint  `json:"code"`
		Msg     string `json:"msg"`
		Details string `json:"details"`
	}
	if jerr := json.Unmarshal(out.Bytes(), &e); jerr != nil || e.Code == nil {
		r.code, r.bad = 999, fmt.Sprintf("exit %d, stdout not a CNI error: %q stderr %q", ee.ExitCode(), out.String(), errb.String())
		return r
	}
	r.code, r.msg, r.detail = *e.Code, e.Msg, e.Details
	switch {
	case r.code == 0:
		r.bad = "failure with code 0"
	case strings.TrimSpace(r.msg) == "":
		r.bad = "CNI error with an empty message"
	case r.code == 100 && !strings.Contains(r.msg+r.detail, ": "):
		r.bad = "code 100 without the underlying error"
	}
	return r
}

// podConf is the pod-mode config with the pod's NPWG annotation in
// runtimeConfig, as CRI-O passes it.
func (s *soak) podConf(p *pod) string {
	sel := []map[string]any{{"name": "soak-a", "interface": "a0"}, {"name": "soak-b", "interface": "b0"}}
	if p.fixed != "" {
		sel[0]["ips"] = []string{p.fixed + "/21"}
	}
	if p.memif {
		sel = append(sel, map[string]any{"name": "soak-m", "interface": "m0"})
	}
	selJSON, _ := json.Marshal(sel)
	ann, _ := json.Marshal(map[string]string{api.NetworksAnnotation: string(selJSON)})
	return fmt.Sprintf(`{"cniVersion":"1.1.0","name":"telcni","type":"telcni","agentSocket":%q,"runtimeConfig":{"%s":%s}}`,
		s.socket, agent.PodAnnotationsKey, ann)
}

func (s *soak) gcConf(valid []string) string {
	type att struct {
		ContainerID string `json:"containerID"`
		IfName      string `json:"ifname"`
	}
	l := []att{}
	for _, cid := range valid {
		l = append(l, att{cid, "eth0"})
	}
	b, _ := json.Marshal(l)
	return fmt.Sprintf(`{"cniVersion":"1.1.0","name":"telcni","type":"telcni","agentSocket":%q,"cni.dev/valid-attachments":%s}`, s.socket, b)
}

// stats counts calls per verb and code, and classifies failures.
type stats struct {
	mu          sync.Mutex
	calls       map[string]map[uint]int
	total       int
	errors      int
	explained   map[string]int    // failures by the fault that explains them
	samples     map[string]string // "VERB code" -> one message
	unexplained []string
	malformed   []string
}

// record counts r and returns whether it is a failure no fault explains.
func (s *soak) record(verb string, r callResult, podFault string) {
	st := &s.stats
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.calls[verb] == nil {
		st.calls[verb] = map[uint]int{}
	}
	st.calls[verb][r.code]++
	st.total++
	if r.code == 0 && r.bad == "" {
		return
	}
	st.errors++
	msg := r.msg
	if r.detail != "" {
		msg += ": " + r.detail
	}
	key := fmt.Sprintf("%s %d", verb, r.code)
	if _, ok := st.samples[key]; !ok {
		st.samples[key] = msg
	}
	if r.bad != "" {
		st.malformed = append(st.malformed, fmt.Sprintf("%s: %s (code %d %q)", verb, r.bad, r.code, msg))
		return
	}
	why := s.faults.explain(r.start, r.end)
	if why == "" {
		why = podFault
	}
	if why == "" {
		st.unexplained = append(st.unexplained, fmt.Sprintf("%s %s code %d: %s", r.start.Format("15:04:05.000"), verb, r.code, msg))
		if s.cfg.verbose {
			fmt.Printf("soak: UNEXPLAINED %s code %d: %s\n", verb, r.code, msg)
		}
		return
	}
	st.explained[why]++
	if s.cfg.verbose {
		fmt.Printf("soak: %s code %d (%s): %s\n", verb, r.code, why, msg)
	}
}
