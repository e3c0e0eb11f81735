package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/telcni/telcni/agent"
	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/internal/agenttest"
	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/internal/testbin"
	"github.com/telcni/telcni/ipam"
	"github.com/telcni/telcni/kernelpath"
	"github.com/telcni/telcni/netsource"
)

var binDir string

func TestMain(m *testing.M) {
	// The plugin under test, and the reference tuning plugin to chain after it.
	testbin.Main(m, &binDir, map[string]string{
		"github.com/telcni/telcni/cmd/telcni":       "telcni",
		"github.com/telcni/telcni/cmd/telcni-agent": "telcni-agent",
		"github.com/telcni/telcni/cmd/telcnictl":    "telcnictl",
		testbin.Plugins + "meta/tuning":             "tuning",
	})
}

type node struct {
	netns  string
	socket string
	store  *ipam.Store
}

// startAgent serves a real agent on a unix socket, with a node netns whose
// veth "up0" stands in for the NIC.
func startAgent(t *testing.T) *node {
	t.Helper()
	n := &node{netns: netnstest.New(t), store: agenttest.Store(t)}
	netnstest.Uplink(t, n.netns, "up0")
	netDir := agenttest.NetworkDir(t, map[string]string{
		"fh.json": `{"name":"fronthaul","path":"macvlan","master":"up0","ipam":{"subnets":[{"cidr":"10.20.0.0/24","gateway":"10.20.0.1"}]}}`,
	})
	kernel, err := kernelpath.New(agenttest.Log(), n.netns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kernel.Close)
	a := agent.New(agent.Config{Store: n.store, Networks: netsource.NewDir(netDir), Log: agenttest.Log(),
		Paths: map[api.PathKind]attach.Path{api.PathMACVLAN: kernel}})
	n.socket = agenttest.Serve(t, a)
	if fi, err := os.Stat(n.socket); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	return n
}

// plugin runs the telcni binary exactly as a runtime does.
func plugin(t *testing.T, command, cid, netns, ifName, args, conf string) (stdout string, cniErr map[string]any) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "telcni"))
	cmd.Env = []string{"CNI_COMMAND=" + command, "CNI_CONTAINERID=" + cid, "CNI_NETNS=" + netns,
		"CNI_IFNAME=" + ifName, "CNI_ARGS=" + args, "CNI_PATH=" + binDir}
	cmd.Stdin = strings.NewReader(conf)
	var out bytes.Buffer
	cmd.Stdout = &out
	err := cmd.Run()
	if err != nil {
		var e map[string]any
		if jerr := json.Unmarshal(out.Bytes(), &e); jerr != nil {
			t.Fatalf("%s: %v; stdout not a CNI error: %q", command, err, out.String())
		}
		return "", e
	}
	return out.String(), nil
}

func podConf(socket, annotation string) string {
	ann, _ := json.Marshal(map[string]string{api.NetworksAnnotation: annotation})
	return fmt.Sprintf(`{"cniVersion":"1.1.0","name":"telcni","type":"telcni","agentSocket":%q,"runtimeConfig":{"%s":%s}}`,
		socket, agent.PodAnnotationsKey, ann)
}

func TestPluginEveryVerb(t *testing.T) {
	n := startAgent(t)
	pod := netnstest.New(t)
	args := "K8S_POD_NAMESPACE=ran;K8S_POD_NAME=du-0"
	conf := podConf(n.socket, `[{"name":"fronthaul","interface":"fh0","ips":["10.20.0.50/24"]}]`)

	out, cerr := plugin(t, "VERSION", "", "", "", "", `{"cniVersion":"1.1.0"}`)
	if cerr != nil || !strings.Contains(out, `"1.1.0"`) || !strings.Contains(out, `"0.3.1"`) {
		t.Fatalf("VERSION: %s %v", out, cerr)
	}
	if _, cerr := plugin(t, "STATUS", "", "", "", "", conf); cerr != nil {
		t.Fatalf("STATUS: %v", cerr)
	}
	out, cerr = plugin(t, "ADD", "c0", pod, "eth0", args, conf)
	if cerr != nil {
		t.Fatalf("ADD: %v", cerr)
	}
	var res current.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.IPs) != 1 || res.IPs[0].Address.String() != "10.20.0.50/24" {
		t.Fatalf("ADD result %s (%v)", out, err)
	}
	if _, cerr := plugin(t, "CHECK", "c0", pod, "eth0", args, conf); cerr != nil {
		t.Fatalf("CHECK: %v", cerr)
	}
	gc := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"telcni","type":"telcni","agentSocket":%q,"cni.dev/valid-attachments":[{"containerID":"c0","ifname":"eth0"}]}`, n.socket)
	if _, cerr := plugin(t, "GC", "", "", "", "", gc); cerr != nil {
		t.Fatalf("GC: %v", cerr)
	}
	if _, cerr := plugin(t, "CHECK", "c0", pod, "eth0", args, conf); cerr != nil {
		t.Fatalf("CHECK after GC that keeps c0: %v", cerr)
	}
	for i := 0; i < 2; i++ {
		if _, cerr := plugin(t, "DEL", "c0", pod, "eth0", args, conf); cerr != nil {
			t.Fatalf("DEL #%d: %v", i+1, cerr)
		}
	}
	_, cerr = plugin(t, "ADD", "c1", pod, "eth0", args, podConf(n.socket, `[{"name":"fronthaul","ips":["10.20.0.999/24"]}]`))
	if cerr == nil || cerr["code"] != float64(7) || !strings.Contains(fmt.Sprint(cerr["msg"]), `networks[0].ips[0]: "10.20.0.999/24" is not an IP prefix`) {
		t.Errorf("bad annotation: %v", cerr)
	}
}

func TestPluginAgentUnreachable(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "nobody.sock")
	conf := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"telcni","type":"telcni","agentSocket":%q}`, socket)
	_, cerr := plugin(t, "ADD", "c0", "/proc/self/ns/net", "eth0", "", conf)
	if cerr == nil || cerr["code"] != float64(11) || !strings.Contains(fmt.Sprint(cerr["msg"]), socket) {
		t.Errorf("ADD with no agent: %v", cerr)
	}
	_, cerr = plugin(t, "STATUS", "", "", "", "", conf)
	if cerr == nil || cerr["code"] != float64(50) {
		t.Errorf("STATUS with no agent: %v", cerr)
	}
}

// TestConflistChainWithTuning runs telcni in attachment mode as the first
// plugin of a conflist, through libcni as containerd and podman do, with the
// reference tuning plugin after it: tuning must receive telcni's result and
// act on the interface telcni made.
func TestConflistChainWithTuning(t *testing.T) {
	n := startAgent(t)
	pod := netnstest.New(t)
	list := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"fh-chain","plugins":[
		{"type":"telcni","agentSocket":%q,"network":"fronthaul","defaultRoute":true,"capabilities":{"ips":true,"mac":true}},
		{"type":"tuning","mtu":1280,"sysctl":{"net.ipv4.conf.IFNAME.arp_notify":"1"}}]}`, n.socket)
	list = strings.ReplaceAll(list, "IFNAME", "eth0")
	cl, err := libcni.ConfListFromBytes([]byte(list))
	if err != nil {
		t.Fatal(err)
	}
	cfg := libcni.NewCNIConfig([]string{binDir}, nil)
	rt := &libcni.RuntimeConf{ContainerID: "chain0", NetNS: pod, IfName: "eth0",
		CapabilityArgs: map[string]any{"ips": []string{"10.20.0.77/24"}, "mac": "02:00:00:20:00:77"}}
	ctx := context.Background()
	r, err := cfg.AddNetworkList(ctx, cl, rt)
	if err != nil {
		t.Fatal(err)
	}
	res, err := current.NewResultFromResult(r)
	if err != nil || res.IPs[0].Address.String() != "10.20.0.77/24" {
		t.Fatalf("chain result %v (%v)", r, err)
	}
	link, err := netnstest.Handle(t, pod).LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if link.Attrs().MTU != 1280 || link.Attrs().HardwareAddr.String() != "02:00:00:20:00:77" {
		t.Errorf("eth0 mtu %d mac %s: tuning (mtu) or the mac capability did not apply", link.Attrs().MTU, link.Attrs().HardwareAddr)
	}
	if err := cfg.CheckNetworkList(ctx, cl, rt); err != nil {
		t.Errorf("CHECK through the chain: %v", err)
	}
	if err := cfg.DelNetworkList(ctx, cl, rt); err != nil {
		t.Fatal(err)
	}
	var left []ipam.Allocation
	_ = n.store.View(func(tx *ipam.Tx) error { left = tx.Allocations(); return nil })
	if len(left) != 0 {
		t.Errorf("allocations after chain DEL: %v", left)
	}
}
