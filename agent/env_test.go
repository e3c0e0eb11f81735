package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/cni"
	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/ipam"
	"github.com/telcni/telcni/kernelpath"
	"github.com/telcni/telcni/netsource"
)

// testEnv is a node in a netns of its own with two stand-in NICs (up0,
// up1), a network directory and an agent over a real bbolt store.
type testEnv struct {
	t      testing.TB
	node   string
	netDir string
	dbPath string
	store  *ipam.Store
	agent  *Agent
	kernel *kernelpath.Path
}

const (
	fronthaulNet = `{"name":"fronthaul","path":"macvlan","master":"up0","ipam":{"subnets":[
		{"cidr":"10.20.0.0/24","rangeStart":"10.20.0.100","rangeEnd":"10.20.0.199","gateway":"10.20.0.1"},
		{"cidr":"fd00:20::/64","gateway":"fd00:20::1"}],"routes":[{"dst":"10.30.0.0/16","gw":"10.20.0.1"}]}}`
	userplaneNet = `{"name":"userplane","path":"macvlan","master":"up1","mode":"bridge","ipam":{"subnets":[
		{"cidr":"10.40.0.0/24","gateway":"10.40.0.1"}]}}`
	brokenNet = `{"name":"broken","path":"macvlan","master":"nosuch9","ipam":{"subnets":[{"cidr":"10.50.0.0/24"}]}}`
)

func newEnv(t testing.TB) *testEnv {
	t.Helper()
	e := &testEnv{t: t, node: netnstest.New(t), netDir: t.TempDir()}
	e.dbPath = filepath.Join(t.TempDir(), "state.db")
	netnstest.Uplink(t, e.node, "up0")
	netnstest.Uplink(t, e.node, "up1")
	e.writeNet("fronthaul.json", fronthaulNet)
	e.writeNet("userplane.json", userplaneNet)
	e.writeNet("broken.json", brokenNet)
	e.start()
	t.Cleanup(e.stop)
	return e
}

func (e *testEnv) writeNet(file, js string) {
	e.t.Helper()
	if err := os.WriteFile(filepath.Join(e.netDir, file), []byte(js), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func (e *testEnv) start() {
	e.t.Helper()
	var err error
	if e.store, err = ipam.Open(e.dbPath); err != nil {
		e.t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	if e.kernel, err = kernelpath.New(log, e.node); err != nil {
		e.t.Fatal(err)
	}
	e.agent = New(Config{Store: e.store, Networks: netsource.NewDir(e.netDir), Log: log,
		Paths: map[api.PathKind]attach.Path{api.PathMACVLAN: e.kernel, api.PathVXLAN: e.kernel}})
	if err := e.agent.Recover(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

func (e *testEnv) stop() {
	if e.store != nil {
		e.store.Close()
		e.kernel.Close()
		e.store = nil
	}
}

// restart simulates an agent restart: a new process over the same state.
func (e *testEnv) restart() {
	e.stop()
	e.start()
}

type pod struct {
	ns, name, cid, netns string
}

func (e *testEnv) pod(name string) pod {
	return pod{ns: "ran", name: name, cid: "cid-" + name, netns: netnstest.New(e.t)}
}

func (p pod) args() string {
	return fmt.Sprintf("IgnoreUnknown=1;K8S_POD_NAMESPACE=%s;K8S_POD_NAME=%s;K8S_POD_UID=uid-%s", p.ns, p.name, p.name)
}

// podConf is the cluster-wide pod-mode config with the pod's annotation
// passed the CRI-O way.
func podConf(annotation string) string {
	ann, _ := json.Marshal(map[string]string{api.NetworksAnnotation: annotation})
	return `{"cniVersion":"1.1.0","name":"telcni","type":"telcni","runtimeConfig":{"` + PodAnnotationsKey + `":` + string(ann) + `}}`
}

func (e *testEnv) call(cmd string, p pod, ifName, conf string) *cni.Reply {
	e.t.Helper()
	return e.agent.Dispatch(context.Background(), &cni.Call{
		Command: cmd, ContainerID: p.cid, Netns: p.netns, IfName: ifName, Args: p.args(), Config: json.RawMessage(conf),
	})
}

func (e *testEnv) mustAdd(p pod, ifName, conf string) *current.Result {
	e.t.Helper()
	r := e.call("ADD", p, ifName, conf)
	if r.Error != nil {
		e.t.Fatalf("ADD %s: code %d: %s", p.name, r.Error.Code, r.Error.Msg)
	}
	var res current.Result
	if err := json.Unmarshal(r.Result, &res); err != nil {
		e.t.Fatalf("decode result: %v\n%s", err, r.Result)
	}
	return &res
}

func (e *testEnv) allocations() []ipam.Allocation {
	var out []ipam.Allocation
	_ = e.store.View(func(tx *ipam.Tx) error { out = tx.Allocations(); return nil })
	return out
}

func (e *testEnv) records() []string {
	var out []string
	_ = e.store.View(func(tx *ipam.Tx) error { out = tx.RecordKeys(); return nil })
	return out
}

func (e *testEnv) assertClean(pods ...pod) {
	e.t.Helper()
	if a := e.allocations(); len(a) != 0 {
		e.t.Errorf("allocations left: %+v", a)
	}
	if r := e.records(); len(r) != 0 {
		e.t.Errorf("records left: %v", r)
	}
	for _, p := range pods {
		if l := netnstest.Links(e.t, p.netns); len(l) != 0 {
			e.t.Errorf("links left in pod %s: %v", p.name, l)
		}
	}
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
