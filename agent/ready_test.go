package agent

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
)

// downPath stands for the VPP path while VPP is unreachable.
type downPath struct{}

func (downPath) Attach(context.Context, *attach.Request) (*attach.Interface, error) {
	return nil, attach.Errorf(attach.CodeTryAgainLater, "VPP not available on /run/vpp/api.sock")
}
func (downPath) Detach(context.Context, *attach.Record) error { return nil }
func (downPath) Check(context.Context, *attach.Record) error  { return nil }
func (downPath) Ready() error                                 { return errors.New("VPP not available on /run/vpp/api.sock") }

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
