package agent

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
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
	netDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(netDir, "fast.json"), []byte(fastNet), 0o644); err != nil {
		t.Fatal(err)
	}
	store, err := ipam.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	m, err := vppagent.NewManager(vppagent.Config{
		Conn:   vppagent.ConnConfig{APISocket: apiSocket, PingInterval: 200 * time.Millisecond},
		Store:  vppagent.FileStore{Dir: t.TempDir()},
		RunDir: t.TempDir(), Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	p := vppagent.NewPath(m)
	a := New(Config{Store: store, Networks: netsource.NewDir(netDir), Log: log,
		Paths: map[api.PathKind]attach.Path{api.PathMemif: p, api.PathVhostUser: p}})
	if err := a.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	return a, m
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
	if r := dispatch(a, "CHECK", "cid-du-0", netns, "net1", fastConf); r.Error != nil {
		t.Errorf("CHECK: %+v", r.Error)
	}
	if r := dispatch(a, "DEL", "cid-du-0", netns, "net1", fastConf); r.Error != nil {
		t.Fatalf("DEL: %+v", r.Error)
	}
	if out := v.MustCLI("show interface"); strings.Contains(out, "memif") {
		t.Errorf("memif left in VPP after DEL:\n%s", out)
	}
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
