package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/telcni/telcni/agent"
	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/cni"
	"github.com/telcni/telcni/internal/agenttest"
	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/kernelpath"
	"github.com/telcni/telcni/netsource"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the output")

const (
	fronthaulNet = `{"name":"fronthaul","path":"macvlan","master":"up0","ipam":{"subnets":[
		{"cidr":"10.20.0.0/24","rangeStart":"10.20.0.100","rangeEnd":"10.20.0.199","gateway":"10.20.0.1"},
		{"cidr":"fd00:20::/64","rangeStart":"fd00:20::100","rangeEnd":"fd00:20::1ff","gateway":"fd00:20::1"}],
		"routes":[{"dst":"10.30.0.0/16","gw":"10.20.0.1"}]}}`
	userplaneNet = `{"name":"userplane","path":"macvlan","master":"up1","mode":"bridge","policyRoutingTable":100,
		"ipam":{"subnets":[{"cidr":"10.40.0.0/24","rangeStart":"10.40.0.10","rangeEnd":"10.40.0.20","gateway":"10.40.0.1"}]}}`
	spareNet = `{"name":"spare","path":"ipvlan","master":"up1","ipam":{"subnets":[{"cidr":"10.50.0.0/24"}]}}`
)

// node is an agent on a stand-in node (a netns with NICs up0 and up1),
// served in-process on a unix socket.
type node struct {
	agent  *agent.Agent
	socket string
}

func newNode(t *testing.T) *node {
	t.Helper()
	host := netnstest.New(t)
	netnstest.Uplink(t, host, "up0")
	netnstest.Uplink(t, host, "up1")
	kernel, err := kernelpath.New(agenttest.Log(), host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kernel.Close)
	dir := agenttest.NetworkDir(t, map[string]string{"fronthaul.json": fronthaulNet, "userplane.json": userplaneNet, "spare.json": spareNet})
	a := agent.New(agent.Config{Store: agenttest.Store(t), Networks: netsource.NewDir(dir), Log: agenttest.Log(),
		Paths: map[api.PathKind]attach.Path{api.PathMACVLAN: kernel, api.PathIPVLAN: kernel}})
	if err := a.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &node{agent: a, socket: agenttest.Serve(t, a)}
}

type pod struct{ ns, name, cid, netns string }

// add ADDs the pod in pod mode with annotation, through agent Dispatch.
func (n *node) add(t *testing.T, p pod, annotation string) {
	t.Helper()
	ann, _ := json.Marshal(map[string]string{api.NetworksAnnotation: annotation})
	conf := `{"cniVersion":"1.1.0","name":"telcni","type":"telcni","runtimeConfig":{"` + agent.PodAnnotationsKey + `":` + string(ann) + `}}`
	r := n.agent.Dispatch(context.Background(), &cni.Call{Command: "ADD", ContainerID: p.cid, Netns: p.netns, IfName: "eth0",
		Args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=" + p.ns + ";K8S_POD_NAME=" + p.name + ";K8S_POD_UID=uid-" + p.name, Config: json.RawMessage(conf)})
	if r.Error != nil {
		t.Fatalf("ADD %s/%s: code %d: %s", p.ns, p.name, r.Error.Code, r.Error.Msg)
	}
}

// ctl runs telcnictl in-process against the node's agent.
func (n *node) ctl(t *testing.T, argv ...string) (stdout, stderr string, status int) {
	t.Helper()
	var o, e bytes.Buffer
	status = run(context.Background(), append([]string{"--socket", n.socket}, argv...), &o, &e)
	return o.String(), e.String(), status
}

func (n *node) mustCtl(t *testing.T, argv ...string) string {
	t.Helper()
	out, errs, st := n.ctl(t, argv...)
	if st != 0 {
		t.Fatalf("telcnictl %s: status %d\n%s%s", strings.Join(argv, " "), st, out, errs)
	}
	return out
}

// Things that differ from run to run: netns names, times, MACs, ifindexes.
var normalizers = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`/var/run/netns/tcn[0-9]+-[0-9]+`), "NETNS"},
	{regexp.MustCompile(`20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z`), "TIME"},
	{regexp.MustCompile(`([0-9a-f]{2}:){5}[0-9a-f]{2}`), "MAC"},
	{regexp.MustCompile(`(ifindex|"ifindex":|"parentIndex":) [0-9]+`), "$1 N"},
}

func normalize(s string) string {
	for _, n := range normalizers {
		s = n.re.ReplaceAllString(s, n.with)
	}
	return s
}

// golden compares out, normalized, with testdata/name.golden.
func golden(t *testing.T, name, out string) {
	t.Helper()
	got := normalize(out)
	file := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", name, file, got, want)
	}
}

func TestKernelPodViews(t *testing.T) {
	n := newNode(t)
	a := pod{ns: "ran", name: "du-a", cid: "cid-du-a", netns: netnstest.New(t)}
	b := pod{ns: "ran", name: "du-b", cid: "cid-du-b", netns: netnstest.New(t)}
	n.add(t, a, `[{"name":"fronthaul","interface":"fh0","ips":["10.20.0.5/24","fd00:20::5/64"]},{"name":"userplane","interface":"n3"}]`)
	n.add(t, b, `fronthaul@fh0`)

	golden(t, "pods", n.mustCtl(t, "pods"))
	golden(t, "ipam", n.mustCtl(t, "ipam"))
	golden(t, "networks", n.mustCtl(t, "networks"))
	out := n.mustCtl(t, "pod", "ran/du-a")
	golden(t, "pod", out)
	for _, want := range []string{
		"fh0  network fronthaul  path macvlan  state ready",
		"link       fh0  ifindex", "macvlan  admin up",
		"host link  up0", "alias      telcni:cid-du-a:fh0",
		"10.20.0.5/24 static gw 10.20.0.1", "fd00:20::5/64",
		"10.30.0.0/16 via 10.20.0.1 table main", "10.20.0.0/24 src 10.20.0.5 table main scope link",
		"n3  network userplane", "10.40.0.10/24", "rules      ", "from 10.40.0.10/32 lookup 100", "table 100",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("pod view lacks %q:\n%s", want, out)
		}
	}

	js := n.mustCtl(t, "pod", "ran/du-a", "-o", "json")
	golden(t, "pod.json", js)
	var v agent.PodView
	if err := json.Unmarshal([]byte(js), &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Interfaces) != 2 || v.Interfaces[0].Link == nil || v.Interfaces[0].Link.Name != "fh0" ||
		v.Interfaces[1].Link == nil || len(v.Interfaces[1].Link.Rules) == 0 {
		t.Errorf("pod view JSON: %s", js)
	}
	if y := n.mustCtl(t, "pod", "ran/du-a", "-o", "yaml"); !strings.Contains(y, "ifName: fh0") || !strings.Contains(y, "hostLink: up0") {
		t.Errorf("pod view YAML:\n%s", y)
	}

	// check: ok, then a difference once an address is gone.
	golden(t, "check", n.mustCtl(t, "check", "ran/du-a"))
	h := netnstest.Handle(t, a.netns)
	l, err := h.LinkByName("fh0")
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := netlink.ParseAddr("10.20.0.5/24")
	if err := h.AddrDel(l, addr); err != nil {
		t.Fatal(err)
	}
	out, errs, st := n.ctl(t, "check", "ran/du-a")
	if st != 1 || !strings.Contains(out, "DIFFERS") || !strings.Contains(out, "address 10.20.0.5/24 missing") ||
		!strings.Contains(errs, "1 of 1 attachments differ") {
		t.Errorf("check after removing an address: status %d\n%s%s", st, out, errs)
	}
	if out := n.mustCtl(t, "check", "ran/du-b"); !strings.Contains(out, "cid-du-b/eth0  fh0         ok") {
		t.Errorf("check du-b:\n%s", out)
	}
}

func TestUnknownPodIsNamed(t *testing.T) {
	n := newNode(t)
	for _, cmd := range []string{"pod", "check"} {
		out, errs, st := n.ctl(t, cmd, "ran/nosuch")
		if st != 1 || out != "" || !strings.Contains(errs, "pod ran/nosuch: not found") {
			t.Errorf("%s of an unknown pod: status %d, stdout %q, stderr %q", cmd, st, out, errs)
		}
	}
	if _, errs, st := n.ctl(t, "pod", "nosuch"); st != 2 || !strings.Contains(errs, `pod "nosuch": want NAMESPACE/NAME`) {
		t.Errorf("pod without namespace: status %d, %q", st, errs)
	}
	if out := n.mustCtl(t, "pods", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("pods of an empty agent as JSON: %q", out)
	}
}

// The single-dash -socket of the first telcnictl still works (scripts and
// e2e tests call it so); a VPP command's words are not rewritten.
func TestSingleDashSocket(t *testing.T) {
	n := newNode(t)
	var o, e bytes.Buffer
	if st := run(context.Background(), []string{"-socket", n.socket, "ipam"}, &o, &e); st != 0 || !strings.Contains(o.String(), "(0 addresses held)") {
		t.Errorf("-socket PATH ipam: status %d\n%s%s", st, o.String(), e.String())
	}
	o.Reset()
	if st := run(context.Background(), []string{"-socket=" + n.socket, "-o", "json", "networks"}, &o, &e); st != 0 || !strings.Contains(o.String(), `"key": "fronthaul"`) {
		t.Errorf("-socket=PATH networks: status %d\n%s%s", st, o.String(), e.String())
	}
	if got := longFlags([]string{"-socket", "s", "vpp", "show", "-socket"}); strings.Join(got, " ") != "--socket s vpp show -socket" {
		t.Errorf("longFlags: %q", got)
	}
}

func TestCompletion(t *testing.T) {
	n := newNode(t)
	n.add(t, pod{ns: "ran", name: "du-a", cid: "cid-du-a", netns: netnstest.New(t)}, `fronthaul@fh0`)
	n.add(t, pod{ns: "core", name: "upf-0", cid: "cid-upf-0", netns: netnstest.New(t)}, `userplane`)
	// What the shell scripts call on TAB.
	out := n.mustCtl(t, "__complete", "pod", "")
	if !strings.HasPrefix(out, "core/upf-0\nran/du-a\n:4\n") {
		t.Errorf("pod completion:\n%s", out)
	}
	if out := n.mustCtl(t, "__complete", "check", "ra"); !strings.HasPrefix(out, "ran/du-a\n:4\n") {
		t.Errorf("check completion of ra:\n%s", out)
	}
	if out := n.mustCtl(t, "__complete", "-o", ""); !strings.HasPrefix(out, "table\njson\nyaml\n:4\n") {
		t.Errorf("-o completion:\n%s", out)
	}
	for _, sh := range []string{"bash", "zsh", "fish"} {
		if out := n.mustCtl(t, "completion", sh); !strings.Contains(out, "telcnictl") || !strings.Contains(out, "__complete") {
			t.Errorf("completion %s script does not call telcnictl __complete", sh)
		}
	}
}

// Every command's help has examples.
func TestHelpHasExamples(t *testing.T) {
	root := newRoot()
	for _, c := range append(root.Commands(), root) {
		if c.Hidden {
			continue
		}
		if c.Example == "" {
			t.Errorf("%s has no examples", c.CommandPath())
		}
		var o bytes.Buffer
		if st := run(context.Background(), []string{c.Name(), "--help"}, &o, &o); c != root && (st != 0 || !strings.Contains(o.String(), "Examples:")) {
			t.Errorf("%s --help: status %d\n%s", c.Name(), st, o.String())
		}
	}
}
