package vppagent

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/telcni/telcni/agent"
	tapi "github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/cni"
	"github.com/telcni/telcni/internal/agenttest"
	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/kernelguest"
	"github.com/telcni/telcni/netsource"
	"github.com/telcni/telcni/sriov"
)

func boundTo(pci string) string {
	d, err := filepath.EvalSymlinks(filepath.Join("/sys/bus/pci/devices", pci, "driver"))
	if err != nil {
		return ""
	}
	return filepath.Base(d)
}

func netdevName(pci string) string {
	ents, err := os.ReadDir(filepath.Join("/sys/bus/pci/devices", pci, "net"))
	if err != nil || len(ents) == 0 {
		return ""
	}
	return ents[0].Name()
}

// Through a real agent and its bbolt records, in the kernel guest on
// QEMU's igb with 2 VFs: a memif network whose avf uplink names the PF
// borrows a VF at its first pod's ADD (igbvf unbound, vfio-pci bound, the
// avf interface made on its PCI address: here VPP is the in-memory fake,
// as VPP cannot run in the guest); pods of an sriov network on the same PF
// get only the other VF; an agent restart keeps the lease (from the
// memif pods' records); the last memif pod's DEL deletes the avf
// interface and gives the VF back to igbvf under its host name, after
// which an sriov pod gets it.
func TestUplinkVFThroughAgentGuest(t *testing.T) {
	pf := kernelguest.RequireSRIOV(t)
	kernelguest.SetAutoprobe(t, pf, false)
	kernelguest.SetNumVFs(t, pf, 2)
	names := make([]string, 2)
	pcis := make([]string, 2)
	for i := range 2 {
		var err error
		if err = kernelguest.BindVF(pf, i, "igbvf"); err != nil {
			t.Fatal(err)
		}
		if names[i], err = kernelguest.VFNetdev(pf, i, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if pcis[i], err = kernelguest.VFPCIAddr(pf, i); err != nil {
			t.Fatal(err)
		}
	}
	dir := agenttest.NetworkDir(t, map[string]string{
		"up.json": `{"name":"up","path":"memif","vpp":{"uplink":{"kind":"avf","pf":"` + pf.Name + `"}},"ipam":{"subnets":[{"cidr":"10.9.0.0/24"}]}}`,
		"fh.json": `{"name":"fh","path":"sriov","master":"` + pf.Name + `","ipam":{"subnets":[{"cidr":"192.0.2.0/24"}]}}`,
	})
	store := agenttest.Store(t)
	f := newFakeVPP()
	runDir := t.TempDir()
	ctx := context.Background()
	var m *Manager
	start := func() *agent.Agent {
		vfs := sriov.New(agenttest.Log())
		paths := map[tapi.PathKind]attach.Path{}
		for _, k := range sriov.Kinds() {
			paths[k] = vfs
		}
		m = lenderManager(f, runDir, vfs)
		vp := NewPath(m) // one Retainer for both kinds, as the agent's main wires it
		for _, k := range Kinds() {
			paths[k] = vp
		}
		a := agent.New(agent.Config{Store: store, Networks: netsource.NewDir(dir), Paths: paths, Log: agenttest.Log()})
		if err := a.Recover(ctx); err != nil {
			t.Fatal(err)
		}
		return a
	}
	netns := map[string]string{}
	call := func(a *agent.Agent, cmd, pod, ann string) *cni.Reply {
		if netns[pod] == "" {
			netns[pod] = netnstest.New(t)
		}
		annJSON, _ := json.Marshal(map[string]string{tapi.NetworksAnnotation: ann})
		conf := `{"cniVersion":"1.1.0","name":"telcni","type":"telcni","runtimeConfig":{"` + agent.PodAnnotationsKey + `":` + string(annJSON) + `}}`
		return a.Dispatch(ctx, &cni.Call{Command: cmd, ContainerID: "ctr-" + pod, Netns: netns[pod], IfName: "eth0",
			Args: "K8S_POD_NAMESPACE=ran;K8S_POD_NAME=" + pod, Config: json.RawMessage(conf)})
	}
	must := func(r *cni.Reply, what string) {
		t.Helper()
		if r.Error != nil {
			t.Fatalf("%s: code %d %s", what, r.Error.Code, r.Error.Msg)
		}
	}
	uplinkIf := func() *fakeIf {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, i := range f.ifs {
			if strings.HasPrefix(i.tag, tagPrefix+"uplink:avf:") {
				return i
			}
		}
		return nil
	}

	a := start()
	must(call(a, "ADD", "u1", `[{"name":"up","interface":"up0"}]`), "ADD u1 (memif on the avf uplink)")
	lent := -1
	for i, pci := range pcis {
		if boundTo(pci) == "vfio-pci" {
			lent = i
		}
	}
	if lent < 0 {
		t.Fatalf("no VF on vfio-pci after the first ADD on the avf uplink (drivers %s %s)", boundTo(pcis[0]), boundTo(pcis[1]))
	}
	other := 1 - lent
	up := uplinkIf()
	if up == nil || up.tag != tagPrefix+"uplink:avf:"+pcis[lent] || !up.up {
		t.Fatalf("avf uplink in VPP: %+v, want one on %s", up, pcis[lent])
	}
	t.Logf("uplink holds VF %d (%s, was %s) on vfio-pci; VPP interface %s", lent, pcis[lent], names[lent], up.name)
	must(call(a, "ADD", "u2", `[{"name":"up","interface":"up0"}]`), "ADD u2")
	must(call(a, "ADD", "k1", `[{"name":"fh","interface":"net1"}]`), "ADD k1 (kernel VF)")
	if boundTo(pcis[other]) != "igbvf" || netdevName(pcis[other]) != "" {
		t.Fatalf("the sriov pod did not get VF %d (%s: driver %s, host netdev %q)", other, pcis[other], boundTo(pcis[other]), netdevName(pcis[other]))
	}
	full := func(a *agent.Agent) {
		t.Helper()
		r := call(a, "ADD", "k2", `[{"name":"fh","interface":"net1"}]`)
		if r.Error == nil || r.Error.Code != attach.CodeNoFreeDevice {
			t.Fatalf("ADD k2 with one VF lent to the uplink and one held: %+v", r.Error)
		}
		t.Logf("ADD k2: code %d %s", r.Error.Code, r.Error.Msg)
	}
	full(a)

	a = start() // agent restart: same state.db, VPP kept running
	full(a)
	if boundTo(pcis[lent]) != "vfio-pci" || uplinkIf() == nil {
		t.Fatalf("after the restart: VF %d on %q, avf uplink %+v", lent, boundTo(pcis[lent]), uplinkIf())
	}
	must(call(a, "DEL", "u1", ""), "DEL u1")
	if boundTo(pcis[lent]) != "vfio-pci" || uplinkIf() == nil {
		t.Fatalf("after DEL of one of two pods: VF on %q, avf uplink %+v", boundTo(pcis[lent]), uplinkIf())
	}
	full(a)
	must(call(a, "DEL", "u2", ""), "DEL u2 (the last pod on the uplink)")
	if uplinkIf() != nil {
		t.Fatalf("avf uplink left in VPP after the last DEL: %+v", uplinkIf())
	}
	if d, n := boundTo(pcis[lent]), netdevName(pcis[lent]); d != "igbvf" || n != names[lent] {
		t.Fatalf("after the last DEL VF %d is on %q with netdev %q, want igbvf and %s", lent, d, n, names[lent])
	}
	t.Logf("after the last DEL VF %d is back on igbvf as %s", lent, names[lent])
	must(call(a, "ADD", "k2", `[{"name":"fh","interface":"net1"}]`), "ADD k2 after the uplink returned its VF")
	for _, pod := range []string{"k1", "k2", "u2"} {
		must(call(a, "DEL", pod, ""), "DEL "+pod)
	}
	for i, pci := range pcis {
		if d, n := boundTo(pci), netdevName(pci); d != "igbvf" || n != names[i] {
			t.Fatalf("at the end VF %d is on %q with netdev %q, want igbvf and %s", i, d, n, names[i])
		}
	}
}
