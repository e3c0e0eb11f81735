package e2e

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/telcni/telcni/agent"
	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/internal/agenttest"
	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/memif"
	"github.com/telcni/telcni/netsource"
	"github.com/telcni/telcni/vppagent"
	"github.com/telcni/telcni/vppagent/vpptest"
)

// startVPPAgent serves a real agent whose memif networks a real VPP serves.
func startVPPAgent(t *testing.T, v *vpptest.VPP) string {
	t.Helper()
	netDir := agenttest.NetworkDir(t, map[string]string{
		"up.json": `{"name":"userplane","path":"memif","ipam":{"subnets":[{"cidr":"10.63.0.0/24","gateway":"10.63.0.1"}]}}`,
	})
	store := agenttest.Store(t)
	log := agenttest.Log()
	run, err := os.MkdirTemp("", "e2evpp") // short: VPP's socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	m, err := vppagent.NewManager(vppagent.Config{Conn: vppagent.ConnConfig{APISocket: v.APISocket, PingInterval: 200 * time.Millisecond},
		RunDir: run, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	vppDone := make(chan struct{})
	go func() { defer close(vppDone); m.Run(ctx) }() // owned: ends with cancel at cleanup
	t.Cleanup(func() { cancel(); <-vppDone })
	p := vppagent.NewPath(m)
	a := agent.New(agent.Config{Store: store, Networks: netsource.NewDir(netDir), Log: log,
		Paths: map[api.PathKind]attach.Path{api.PathMemif: p, api.PathVhostUser: p}})
	socket := agenttest.Serve(t, a)
	for m.Ready() != nil {
		select {
		case <-m.Conn().Changed():
		case <-time.After(10 * time.Second):
			t.Fatalf("VPP not ready: %v", m.Ready())
		}
	}
	return socket
}

// networkStatus reads the agent's network-status for a container.
func networkStatus(t *testing.T, socket, cid string) []api.NetworkStatus {
	t.Helper()
	c := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}}
	resp, err := c.Get("http://agent/v1/attachments")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var views []struct {
		ContainerID   string              `json:"containerID"`
		NetworkStatus []api.NetworkStatus `json:"networkStatus"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&views); err != nil {
		t.Fatal(err)
	}
	for _, v := range views {
		if v.ContainerID == cid {
			return v.NetworkStatus
		}
	}
	return nil
}

// The plugin binary, called as a runtime calls it, gives a pod a memif
// served by a real VPP; the pod application connects with the device-info
// it is given; DEL removes it from VPP; STATUS follows VPP's life.
func TestVPPPluginMemif(t *testing.T) {
	v := vpptest.Start(t, vpptest.Options{})
	socket := startVPPAgent(t, v)
	pod := netnstest.New(t)
	args := "K8S_POD_NAMESPACE=ran;K8S_POD_NAME=cu-0"
	conf := podConf(socket, `[{"name":"userplane","interface":"up0","ips":["10.63.0.7/24"]}]`)
	if _, cerr := plugin(t, "STATUS", "", "", "", "", conf); cerr != nil {
		t.Fatalf("STATUS: %v", cerr)
	}
	if _, cerr := plugin(t, "ADD", "c-vpp", pod, "eth0", args, conf); cerr != nil {
		t.Fatalf("ADD: %v", cerr)
	}
	st := networkStatus(t, socket, "c-vpp")
	if len(st) != 1 || st[0].DeviceInfo == nil || st[0].DeviceInfo.Type != api.DeviceInfoMemif {
		t.Fatalf("network-status %+v", st)
	}
	mi := st[0].DeviceInfo.Memif
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := memif.Dial(ctx, memif.Config{Socket: mi.Path, ID: mi.ID, Netns: pod})
	if err != nil {
		t.Fatalf("pod application dialing %s id %d in its netns: %v", mi.Path, mi.ID, err)
	}
	conn.Close()
	if _, cerr := plugin(t, "DEL", "c-vpp", pod, "eth0", args, conf); cerr != nil {
		t.Fatalf("DEL: %v", cerr)
	}
	if out := v.MustCLI("show interface"); strings.Contains(out, "memif") {
		t.Errorf("memif left in VPP after DEL:\n%s", out)
	}
	v.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, cerr := plugin(t, "STATUS", "", "", "", "", conf)
		if cerr != nil && cerr["code"] == float64(attach.CodeLimitedConnectivity) && strings.Contains(cerr["msg"].(string), v.APISocket) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("STATUS with VPP killed: %v, want code 51 naming %s", cerr, v.APISocket)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
