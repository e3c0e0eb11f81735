package agent

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/cni"
	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/ipam"
	"github.com/telcni/telcni/netsource"
	"github.com/telcni/telcni/vppagent"
	"github.com/telcni/telcni/vppagent/vpptest"
)

const fastNet = `{"name":"fast","path":"memif","ipam":{"subnets":[{"cidr":"10.61.0.0/24","gateway":"10.61.0.1"}]}}`

// vppAgent is an agent whose memif networks are served by a VPP manager
// on apiSocket.
func vppAgent(t *testing.T, apiSocket string) (*Agent, *vppagent.Manager) {
	t.Helper()
	a, m, _ := vppAgentIn(t, apiSocket, t.TempDir())
	return a, m
}

// vppAgentIn is vppAgent with its state in stateDir (an agent restart
// reuses it); stop ends the agent as a crash would: VPP is left as it is.
func vppAgentIn(t *testing.T, apiSocket, stateDir string) (a *Agent, m *vppagent.Manager, stop func()) {
	t.Helper()
	netDir := filepath.Join(stateDir, "networks")
	if err := os.MkdirAll(netDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(netDir, "fast.json"), []byte(fastNet), 0o644); err != nil {
		t.Fatal(err)
	}
	store, err := ipam.Open(filepath.Join(stateDir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	m, err = vppagent.NewManager(vppagent.Config{
		Conn:   vppagent.ConnConfig{APISocket: apiSocket, PingInterval: 200 * time.Millisecond},
		RunDir: filepath.Join(stateDir, "run"), Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done; store.Close() }) }
	t.Cleanup(stop)
	p := vppagent.NewPath(m)
	a = New(Config{Store: store, Networks: netsource.NewDir(netDir), Log: log,
		Paths: map[api.PathKind]attach.Path{api.PathMemif: p, api.PathVhostUser: p}})
	if err := a.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	return a, m, stop
}

func waitVPP(t *testing.T, m *vppagent.Manager) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for m.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("VPP not ready: %v", m.Ready())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The agent's records are the only record of VPP interfaces: after an
// agent crash the new agent keeps what its records hold (same interface,
// not re-created), removes what they do not, and DELs from them.
func TestVPPAgentRestartFollowsItsRecords(t *testing.T) {
	v := vpptest.Start(t, vpptest.Options{})
	state := t.TempDir()
	a1, m1, stop1 := vppAgentIn(t, v.APISocket, state)
	waitVPP(t, m1)
	netns := netnstest.New(t)
	if r := dispatch(a1, "ADD", "cid-keep", netns, "net1", fastConf); r.Error != nil {
		t.Fatalf("ADD: %+v", r.Error)
	}
	// An interface VPP has but no agent record holds (made past the agent).
	n, err := api.ParseNetwork([]byte(fastNet))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m1.Add(context.Background(), vppagent.PodInterface{ContainerID: "cid-orphan", IfName: "net1", Netns: netns,
		Network: vppagent.NetworkFromAPI(n)}); err != nil {
		t.Fatal(err)
	}
	rec, err := a1.get(recordKey("cid-keep", "net1"))
	if err != nil {
		t.Fatal(err)
	}
	keptIdx := rec.Interfaces[0].Interface.State["vppSwIfIndex"]
	if n := strings.Count(v.MustCLI("show interface"), "memif"); n != 2 {
		t.Fatalf("%d memif interfaces before the restart, want 2", n)
	}
	stop1() // kill: no DEL, VPP untouched

	a2, m2, _ := vppAgentIn(t, v.APISocket, state)
	waitVPP(t, m2)
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(v.MustCLI("show interface"), "memif") != 1 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // reconcile runs once both Retain and the connect happened
	}
	if out := v.MustCLI("show interface"); strings.Count(out, "memif") != 1 {
		t.Errorf("after the restart VPP should have only the recorded memif:\n%s", out)
	}
	if recs := m2.Records(); len(recs) != 1 || strconv.FormatUint(uint64(recs[0].SwIfIndex), 10) != keptIdx {
		t.Errorf("the recorded interface (sw_if_index %s) should be kept, not re-created: %+v", keptIdx, recs)
	}
	checkThenDel(t, a2, v, "cid-keep", netns)
}

func dispatch(a *Agent, cmd, cid, netns, ifName, conf string) *cni.Reply {
	return a.Dispatch(context.Background(), &cni.Call{Command: cmd, ContainerID: cid, Netns: netns, IfName: ifName,
		Args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=ran;K8S_POD_NAME=du-0;K8S_POD_UID=uid-du-0", Config: json.RawMessage(conf)})
}

const fastConf = `{"cniVersion":"1.1.0","name":"fast","type":"telcni","network":"fast"}`

func TestVPPThroughAgentMemifAddDel(t *testing.T) {
	v := vpptest.Start(t, vpptest.Options{})
	a, m := vppAgent(t, v.APISocket)
	deadline := time.Now().Add(15 * time.Second)
	for m.Ready() != nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	netns := netnstest.New(t)
	if r := dispatch(a, "STATUS", "", "", "", fastConf); r.Error != nil {
		t.Fatalf("STATUS with VPP up: %+v", r.Error)
	}
	r := dispatch(a, "ADD", "cid-du-0", netns, "net1", fastConf)
	if r.Error != nil {
		t.Fatalf("ADD: %+v", r.Error)
	}
	rec, err := a.get(recordKey("cid-du-0", "net1"))
	if err != nil {
		t.Fatal(err)
	}
	st := NetworkStatus(rec)
	if len(st) != 1 || st[0].DeviceInfo == nil || st[0].DeviceInfo.Type != api.DeviceInfoMemif ||
		!strings.HasPrefix(st[0].DeviceInfo.Memif.Path, "abstract:telcni-") || len(st[0].IPs) != 1 {
		t.Fatalf("network-status %+v", st)
	}
	out := v.MustCLI("show interface")
	if !strings.Contains(out, "memif") {
		t.Fatalf("no memif in VPP after ADD:\n%s", out)
	}
	checkThenDel(t, a, v, "cid-du-0", netns)
}

func TestVPPThroughAgentDown(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "no-vpp.sock")
	a, _ := vppAgent(t, sock)
	r := dispatch(a, "ADD", "cid-du-1", netnstest.New(t), "net1", fastConf)
	if r.Error == nil || r.Error.Code != attach.CodeTryAgainLater || !strings.Contains(r.Error.Msg, sock) {
		t.Fatalf("ADD with VPP down: %+v, want code 11 naming %s", r.Error, sock)
	}
	if r := dispatch(a, "STATUS", "", "", "", fastConf); r.Error == nil || r.Error.Code != attach.CodeNotAvailable {
		t.Fatalf("STATUS for a VPP network with VPP down: %+v", r.Error)
	}
	if allocs := func() int {
		n := 0
		_ = a.store.View(func(tx *ipam.Tx) error { n = len(tx.RecordKeys()); return nil })
		return n
	}(); allocs != 0 {
		t.Errorf("%d records left after a failed ADD", allocs)
	}
}

// checkThenDel CHECKs the container's fast interface, DELs it and proves
// VPP keeps no memif.
func checkThenDel(t *testing.T, a *Agent, v *vpptest.VPP, cid, netns string) {
	t.Helper()
	if r := dispatch(a, "CHECK", cid, netns, "net1", fastConf); r.Error != nil {
		t.Errorf("CHECK: %+v", r.Error)
	}
	if r := dispatch(a, "DEL", cid, netns, "net1", fastConf); r.Error != nil {
		t.Fatalf("DEL: %+v", r.Error)
	}
	if out := v.MustCLI("show interface"); strings.Contains(out, "memif") {
		t.Errorf("memif left in VPP after DEL:\n%s", out)
	}
}
