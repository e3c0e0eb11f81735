package sriov

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/telcni/telcni/agent"
	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/cni"
	"github.com/telcni/telcni/internal/agenttest"
	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/kernelguest"
	"github.com/telcni/telcni/netsource"
)

// Through a real agent: one pod takes a kernel VF and a DPDK VF of the same
// PF; the VFs run out (code 104, the PF named); after an agent restart the
// records still hold the VFs (Retain), and DEL through the new agent resets
// and frees them for the next pod.
func TestAgentSRIOVAcrossRestart(t *testing.T) {
	pf, _ := guestPF(t, 2)
	dir := agenttest.NetworkDir(t, map[string]string{
		"fh.json": `{"name":"fh","path":"sriov","master":"` + pf.Name + `","vlan":100,"sriov":{"spoofchk":true},"ipam":{"subnets":[{"cidr":"192.0.2.0/24"}]}}`,
		"dp.json": `{"name":"dp","path":"sriov-dpdk","master":"` + pf.Name + `","vlan":300,"ipam":{"subnets":[{"cidr":"198.51.100.0/24"}]}}`,
	})
	store := agenttest.Store(t)
	ctx := context.Background()
	start := func() *agent.Agent {
		p := New(agenttest.Log())
		paths := map[api.PathKind]attach.Path{}
		for _, k := range Kinds() {
			paths[k] = p
		}
		a := agent.New(agent.Config{Store: store, Networks: netsource.NewDir(dir), Paths: paths, Log: agenttest.Log()})
		if err := a.Recover(ctx); err != nil {
			t.Fatal(err)
		}
		return a
	}
	netns := map[string]string{"p1": netnstest.New(t), "p2": netnstest.New(t)}
	call := func(a *agent.Agent, cmd, pod, ann string) *cni.Reply {
		annJSON, _ := json.Marshal(map[string]string{api.NetworksAnnotation: ann})
		conf := `{"cniVersion":"1.1.0","name":"telcni","type":"telcni","runtimeConfig":{"` + agent.PodAnnotationsKey + `":` + string(annJSON) + `}}`
		return a.Dispatch(ctx, &cni.Call{Command: cmd, ContainerID: "ctr-" + pod, Netns: netns[pod], IfName: "eth0",
			Args: "K8S_POD_NAMESPACE=ran;K8S_POD_NAME=" + pod, Config: json.RawMessage(conf)})
	}
	a := start()
	t0 := time.Now()
	r := call(a, "ADD", "p1", `[{"name":"fh","interface":"net1","mac":"02:00:00:00:0d:01"},{"name":"dp","interface":"dpdk0"}]`)
	if r.Error != nil {
		t.Fatalf("ADD p1: %d %s", r.Error.Code, r.Error.Msg)
	}
	t.Logf("ADD kernel VF + DPDK VF through the agent in %s", time.Since(t0).Round(time.Millisecond))
	vf1, err := kernelguest.VFPCIAddr(pf, 1)
	if err != nil {
		t.Fatal(err)
	}
	vf0, _ := kernelguest.VFPCIAddr(pf, 0)
	res := string(r.Result)
	if !strings.Contains(res, `"pciID":"`+vf0) || !strings.Contains(res, `"pciID":"`+vf1) || !strings.Contains(res, "02:00:00:00:0d:01") {
		t.Fatalf("result lacks the VFs' PCI addresses or the MAC: %s", res)
	}
	busy := func(a *agent.Agent) {
		t.Helper()
		r := call(a, "ADD", "p2", `[{"name":"fh"}]`)
		if r.Error == nil || r.Error.Code != attach.CodeNoFreeDevice || !strings.Contains(r.Error.Msg, "no free VF on PF "+pf.Name) {
			t.Fatalf("ADD p2 with both VFs taken: %+v", r.Error)
		}
		t.Logf("ADD p2: code %d %s", r.Error.Code, r.Error.Msg)
	}
	busy(a)

	a = start() // restart: a fresh path learns the taken VFs from the records
	busy(a)
	if r := call(a, "DEL", "p1", ""); r.Error != nil {
		t.Fatalf("DEL p1 after restart: %s", r.Error.Msg)
	}
	if d := boundDriver(vf1); d != "igbvf" {
		t.Fatalf("DPDK VF on %q after DEL, want igbvf", d)
	}
	for vf := range 2 {
		assertReset(t, pf.Name, vf, "02:00:00:00:0d:01")
	}
	if r := call(a, "ADD", "p2", `[{"name":"fh"}]`); r.Error != nil {
		t.Fatalf("ADD p2 after DEL p1: %s", r.Error.Msg)
	}
	if r := call(a, "DEL", "p2", ""); r.Error != nil {
		t.Fatalf("DEL p2: %s", r.Error.Msg)
	}
	if r := call(a, "DEL", "p2", ""); r.Error != nil {
		t.Fatalf("second DEL p2: %s", r.Error.Msg)
	}
}
