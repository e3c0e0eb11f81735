package agent

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/cni"
	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/ipam"
	"github.com/telcni/telcni/netsource"
)

// downPath stands for the VPP path while VPP is unreachable.
type downPath struct{}

func (downPath) Attach(context.Context, *attach.Request) (*attach.Interface, error) {
	return nil, attach.Errorf(attach.CodeTryAgainLater, "VPP not available on /run/vpp/api.sock")
}
func (downPath) Detach(context.Context, *attach.Record) error { return nil }
func (downPath) Check(context.Context, *attach.Record) error  { return nil }
func (downPath) ReadyFor(*api.Network) error {
	return errors.New("VPP not available on /run/vpp/api.sock")
}

func TestStatusReflectsPathReadiness(t *testing.T) {
	e := newEnv(t)
	const podMode = `{"cniVersion":"1.1.0","name":"telcni","type":"telcni"}`
	// No VPP network defined: a missing VPP does not matter.
	e.agent.paths[api.PathMemif] = downPath{}
	if r := e.call("STATUS", pod{}, "", podMode); r.Error != nil {
		t.Fatalf("STATUS without VPP networks: %+v", r.Error)
	}
	e.writeNet("fast.json", `{"name":"fast","path":"memif","ipam":{"subnets":[{"cidr":"10.60.0.0/24"}]}}`)
	r := e.call("STATUS", pod{}, "", podMode)
	if r.Error == nil || r.Error.Code != attach.CodeLimitedConnectivity || !strings.Contains(r.Error.Msg, "/run/vpp/api.sock") {
		t.Fatalf("pod-mode STATUS with VPP down: %+v", r.Error)
	}
	r = e.call("STATUS", pod{}, "", `{"cniVersion":"1.1.0","name":"fast","type":"telcni","network":"fast"}`)
	if r.Error == nil || r.Error.Code != attach.CodeNotAvailable {
		t.Fatalf("STATUS for the VPP network with VPP down: %+v", r.Error)
	}
	if r := e.call("STATUS", pod{}, "", `{"cniVersion":"1.1.0","name":"fh","type":"telcni","network":"fronthaul"}`); r.Error != nil {
		t.Fatalf("STATUS for a kernel network with VPP down: %+v", r.Error)
	}
}

// retainPath stands for the VPP path: it attaches anything and remembers
// what Retain was handed.
type retainPath struct{ retained []*attach.Record }

func (p *retainPath) Attach(_ context.Context, req *attach.Request) (*attach.Interface, error) {
	return &attach.Interface{Name: req.IfName}, nil
}
func (*retainPath) Detach(context.Context, *attach.Record) error { return nil }
func (*retainPath) Check(context.Context, *attach.Record) error  { return nil }
func (p *retainPath) Retain(_ context.Context, recs []*attach.Record) error {
	p.retained = recs
	return nil
}

func TestRecoverHandsReadyRecordsToRetainers(t *testing.T) {
	netDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(netDir, "fast.json"), []byte(`{"name":"fast","path":"memif","ipam":{"subnets":[{"cidr":"10.62.0.0/24"}]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(t.TempDir(), "state.db")
	open := func(p *retainPath) (*Agent, func()) {
		store, err := ipam.Open(db)
		if err != nil {
			t.Fatal(err)
		}
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
		a := New(Config{Store: store, Networks: netsource.NewDir(netDir), Log: log, Paths: map[api.PathKind]attach.Path{api.PathMemif: p}})
		if err := a.Recover(context.Background()); err != nil {
			t.Fatal(err)
		}
		return a, func() { store.Close() }
	}
	p1 := &retainPath{}
	a, closeDB := open(p1)
	if len(p1.retained) != 0 {
		t.Fatalf("retained %d records of an empty store", len(p1.retained))
	}
	conf := `{"cniVersion":"1.1.0","name":"fast","type":"telcni","network":"fast"}`
	for _, cid := range []string{"c1", "c2"} {
		if r := a.Dispatch(context.Background(), &cni.Call{Command: "ADD", ContainerID: cid, Netns: netnstest.New(t), IfName: "net1", Config: json.RawMessage(conf)}); r.Error != nil {
			t.Fatalf("ADD %s: %+v", cid, r.Error)
		}
	}
	if r := a.Dispatch(context.Background(), &cni.Call{Command: "DEL", ContainerID: "c2", IfName: "net1", Config: json.RawMessage(conf)}); r.Error != nil {
		t.Fatalf("DEL: %+v", r.Error)
	}
	closeDB()
	p2 := &retainPath{}
	_, closeDB = open(p2) // the agent restarts
	defer closeDB()
	if len(p2.retained) != 1 || p2.retained[0].ContainerID != "c1" || p2.retained[0].Network == nil {
		t.Fatalf("retained %+v, want c1's interface", p2.retained)
	}
}
