package delegate_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"

	"github.com/telcni/telcni/agent"
	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/cni"
	"github.com/telcni/telcni/delegate"
	"github.com/telcni/telcni/internal/agenttest"
	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/internal/testbin"
	"github.com/telcni/telcni/ipam"
	"github.com/telcni/telcni/kernelpath"
	"github.com/telcni/telcni/netsource"
)

var binDir string

// The reference plugins the networks delegate to, built for the test.
func TestMain(m *testing.M) {
	testbin.Main(m, &binDir, map[string]string{
		testbin.Plugins + "main/bridge":     "bridge",
		testbin.Plugins + "main/macvlan":    "macvlan",
		testbin.Plugins + "ipam/host-local": "host-local",
		testbin.Plugins + "ipam/static":     "static",
	})
}

type node struct {
	netns, state, hostLocal string
	store                   *ipam.Store
	networks                string
}

// newNode is a node netns with the stand-in NIC up0, its networks: one of
// telcni's own (macvlan), one delegated to macvlan with host-local IPAM,
// one delegated to bridge with telcni's IPAM, one naming a conflist.
func newNode(t *testing.T) *node {
	t.Helper()
	n := &node{netns: netnstest.New(t), state: t.TempDir(), hostLocal: t.TempDir()}
	netnstest.Uplink(t, n.netns, "up0")
	confDir := t.TempDir()
	conflist := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"vendor-net","plugins":[{"type":"macvlan","master":"up0","mode":"bridge","ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":"10.93.0.0/24"}]]}}]}`, n.hostLocal)
	if err := os.WriteFile(filepath.Join(confDir, "10-vendor.conflist"), []byte(conflist), 0o644); err != nil {
		t.Fatal(err)
	}
	n.networks = confDir
	return n
}

func (n *node) agent(t *testing.T) *agent.Agent {
	t.Helper()
	if n.store == nil {
		s, err := ipam.Open(filepath.Join(n.state, "state.db"))
		if err != nil {
			t.Fatal(err)
		}
		n.store = s
	}
	kernel, err := kernelpath.New(agenttest.Log(), n.netns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kernel.Close)
	nets := agenttest.NetworkDir(t, map[string]string{
		"own.json": `{"name":"own","path":"macvlan","master":"up0","ipam":{"subnets":[{"cidr":"10.90.0.0/24"}]}}`,
		"mv.json": fmt.Sprintf(`{"name":"mv","path":"delegate","delegate":{"plugin":{"type":"macvlan","master":"up0","mode":"bridge",
			"ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":"10.91.0.0/24"}]]}}}}`, n.hostLocal),
		"br.json": `{"name":"br","path":"delegate","delegate":{"ipam":"telcni","plugin":{"type":"bridge","bridge":"tcbr0"}},
			"ipam":{"subnets":[{"cidr":"10.92.0.0/24","gateway":"10.92.0.1"}]}}`,
		"vendor.json": `{"name":"vendor","path":"delegate","delegate":{"conflist":"vendor-net"}}`,
		"broken.json": `{"name":"broken","path":"delegate","delegate":{"plugin":{"type":"macvlan","master":"nope0",
			"ipam":{"type":"host-local","ranges":[[{"subnet":"10.94.0.0/24"}]]}}}}`,
	})
	del := delegate.New(delegate.Config{BinDirs: []string{binDir}, ConfDir: n.networks, CacheDir: filepath.Join(n.state, "cni-cache"),
		HostNetns: n.netns, Log: agenttest.Log()})
	return agent.New(agent.Config{Store: n.store, Networks: netsource.NewDir(nets), Log: agenttest.Log(),
		Paths: map[api.PathKind]attach.Path{api.PathMACVLAN: kernel, api.PathDelegate: del}})
}

const conf = `{"cniVersion":"1.1.0","name":"telcni","type":"telcni","runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"k8s.v1.cni.cncf.io/networks":%q}}}`

func call(a *agent.Agent, cmd, cid, netns, annotation string) *cni.Reply {
	return a.Dispatch(context.Background(), &cni.Call{Command: cmd, ContainerID: cid, Netns: netns, IfName: "eth0",
		Args: "K8S_POD_NAMESPACE=ran;K8S_POD_NAME=" + cid, Config: json.RawMessage(fmt.Sprintf(conf, annotation))})
}

func addrsOf(t *testing.T, netns string) map[string][]string {
	t.Helper()
	h := netnstest.Handle(t, netns)
	links, _ := h.LinkList()
	out := map[string][]string{}
	for _, l := range links {
		as, _ := h.AddrList(l, netlink.FAMILY_V4)
		for _, a := range as {
			out[l.Attrs().Name] = append(out[l.Attrs().Name], a.IPNet.String())
		}
	}
	return out
}

// One pod-mode ADD makes telcni's own interface and three delegated ones
// (plugin IPAM, telcni IPAM through the static plugin, a named conflist);
// the result and network-status carry every address; CHECK reaches the
// delegates; after an agent restart DEL still reaches them, and the
// delegates' own IPAM is freed.
func TestDelegatesBesideOwnInterfaces(t *testing.T) {
	n := newNode(t)
	a := n.agent(t)
	pod := netnstest.New(t)
	const ann = `[{"name":"own","interface":"own0"},{"name":"mv","interface":"mv0"},{"name":"br","interface":"br0","ips":["10.92.0.7/24"]},{"name":"vendor","interface":"vn0"}]`
	r := call(a, "ADD", "cid-1", pod, ann)
	if r.Error != nil {
		t.Fatalf("ADD: code %d: %s", r.Error.Code, r.Error.Msg)
	}
	var res current.Result
	if err := json.Unmarshal(r.Result, &res); err != nil {
		t.Fatal(err)
	}
	got := addrsOf(t, pod)
	want := map[string]string{"own0": "10.90.0.", "mv0": "10.91.0.", "br0": "10.92.0.7/24", "vn0": "10.93.0."}
	for ifn, prefix := range want {
		if len(got[ifn]) != 1 || !strings.HasPrefix(got[ifn][0], prefix) {
			t.Errorf("%s in the pod: %v, want an address %s*", ifn, got[ifn], prefix)
		}
	}
	var resIPs []string
	for _, ip := range res.IPs {
		resIPs = append(resIPs, ip.Address.String())
	}
	for ifn := range want {
		if len(got[ifn]) == 1 && !strings.Contains(strings.Join(resIPs, " "), got[ifn][0]) {
			t.Errorf("the result lacks %s's %s: %v", ifn, got[ifn][0], resIPs)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(n.hostLocal, "telcni-mv")); len(ents) == 0 {
		t.Error("host-local recorded no allocation for the delegated macvlan")
	}
	if r := call(a, "CHECK", "cid-1", pod, ann); r.Error != nil {
		t.Errorf("CHECK: code %d: %s", r.Error.Code, r.Error.Msg)
	}

	// The agent restarts: DEL finds the delegates' configs in the records.
	n.store.Close()
	n.store = nil
	a2 := n.agent(t)
	if err := a2.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := call(a2, "DEL", "cid-1", pod, ann); r.Error != nil {
		t.Fatalf("DEL after restart: code %d: %s", r.Error.Code, r.Error.Msg)
	}
	if left := addrsOf(t, pod); len(left) != 0 {
		t.Errorf("left in the pod after DEL: %v", left)
	}
	for _, net := range []string{"telcni-mv", "vendor-net"} {
		ents, _ := os.ReadDir(filepath.Join(n.hostLocal, net))
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), "last_reserved_ip") && e.Name() != "lock" {
				t.Errorf("host-local of %s still holds %s after DEL", net, e.Name())
			}
		}
	}
	n.store.Close()
}

// A delegate that fails makes the whole ADD fail with the plugin's own
// message, and nothing is left: telcni's interface is removed too.
func TestFailingDelegateUndoesTheADD(t *testing.T) {
	n := newNode(t)
	a := n.agent(t)
	pod := netnstest.New(t)
	r := call(a, "ADD", "cid-2", pod, `[{"name":"own","interface":"own0"},{"name":"broken","interface":"bk0"}]`)
	if r.Error == nil || !strings.Contains(r.Error.Msg, "delegate macvlan ADD") || !strings.Contains(r.Error.Msg, "Link not found") {
		t.Fatalf("a delegate whose master does not exist: %+v, want the plugin's own error", r.Error)
	}
	if left := addrsOf(t, pod); len(left) != 0 {
		t.Errorf("left after the failed ADD: %v", left)
	}
	var held int
	_ = n.store.View(func(tx *ipam.Tx) error { held = len(tx.Allocations()) + len(tx.RecordKeys()); return nil })
	if held != 0 {
		t.Errorf("%d addresses or records left after the failed ADD", held)
	}
	n.store.Close()
}
