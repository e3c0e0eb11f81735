package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/internal/netnstest"
)

const vxlanNet = `{"name":"ctr-internal","path":"vxlan","vxlan":{"vni":%d,"remote":"192.168.77.2","device":"up0"},
	"ipam":{"subnets":[{"cidr":"10.42.0.0/24"}]}}`

func (e *testEnv) hostLinkExists(name string) bool {
	_, err := netnstest.Handle(e.t, e.node).LinkByName(name)
	return err == nil
}

func TestHostLinkLivesWhileDefinedOrUsed(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.writeNet("vx.json", strings.Replace(vxlanNet, "%d", "42", 1))
	if err := e.agent.SyncHostLinks(ctx); err != nil {
		t.Fatal(err)
	}
	if !e.hostLinkExists("vx42") {
		t.Fatal("defining the network did not create vx42")
	}
	a, b := e.pod("vx-a"), e.pod("vx-b")
	e.mustAdd(a, "eth0", podConf("ctr-internal"))
	e.mustAdd(b, "eth0", podConf("ctr-internal"))

	// The definition goes away while pods use it: the link stays, across a
	// restart too (the records are the count).
	if err := os.Remove(filepath.Join(e.netDir, "vx.json")); err != nil {
		t.Fatal(err)
	}
	e.restart()
	if err := e.agent.SyncHostLinks(ctx); err != nil {
		t.Fatal(err)
	}
	if !e.hostLinkExists("vx42") {
		t.Fatal("vx42 removed while pods use it")
	}
	if r := e.call("DEL", a, "eth0", podConf("")); r.Error != nil {
		t.Fatal(r.Error)
	}
	if !e.hostLinkExists("vx42") {
		t.Fatal("vx42 removed while pod b still uses it")
	}
	if r := e.call("DEL", b, "eth0", podConf("")); r.Error != nil {
		t.Fatal(r.Error)
	}
	if e.hostLinkExists("vx42") {
		t.Fatal("vx42 left after the last pod left an undefined network")
	}
}

func TestBreakingChangeRefusedWhilePodsAttached(t *testing.T) {
	e := newEnv(t)
	e.writeNet("vx.json", strings.Replace(vxlanNet, "%d", "42", 1))
	a := e.pod("vx-old")
	e.mustAdd(a, "eth0", podConf("ctr-internal"))
	e.writeNet("vx.json", strings.Replace(vxlanNet, "%d", "43", 1))
	r := e.call("ADD", e.pod("vx-new"), "eth0", podConf("ctr-internal"))
	if r.Error == nil || r.Error.Code != attach.CodeInvalidConfig || !strings.Contains(r.Error.Msg, "ran/vx-old") ||
		!strings.Contains(r.Error.Msg, "refused") {
		t.Fatalf("ADD after a breaking change: %+v", r.Error)
	}
	if r := e.call("DEL", a, "eth0", podConf("")); r.Error != nil {
		t.Fatal(r.Error)
	}
	// With the old pods gone the new definition applies.
	e.mustAdd(e.pod("vx-new2"), "eth0", podConf("ctr-internal"))
	if !e.hostLinkExists("vx43") || e.hostLinkExists("vx42") {
		t.Errorf("host links after the change: vx43 %v vx42 %v", e.hostLinkExists("vx43"), e.hostLinkExists("vx42"))
	}
}
