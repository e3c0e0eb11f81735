package agent

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/cni"
	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/ipam"
	"github.com/telcni/telcni/netsource"
)

// kubeletDevices stands in for the kubelet's pod resources API (the real
// one is exercised by e2e/kubelet's TestKubeletPodResources).
type kubeletDevices struct {
	alloc map[string][]string // "ns/name/resource" -> device IDs
	err   error
}

func (k *kubeletDevices) Devices(_ context.Context, ns, name, resource string) ([]string, error) {
	return k.alloc[ns+"/"+name+"/"+resource], k.err
}

// devicePath records the device each SR-IOV interface was given.
type devicePath struct {
	mu  sync.Mutex
	got map[string]string // ifName -> deviceID
}

func (p *devicePath) Attach(_ context.Context, req *attach.Request) (*attach.Interface, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.got[req.ContainerID+"/"+req.IfName] = req.DeviceID
	return &attach.Interface{Name: req.IfName, Sandbox: req.Netns}, nil
}
func (p *devicePath) Detach(context.Context, *attach.Record) error { return nil }
func (p *devicePath) Check(context.Context, *attach.Record) error  { return nil }

func TestSRIOVDeviceFromTheKubelet(t *testing.T) {
	netDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(netDir, "fh.json"), []byte(`{"name":"fh","path":"sriov","master":"p0",
		"sriov":{"resourceName":"example.com/fh_vf"},"ipam":{"subnets":[{"cidr":"10.60.0.0/24"}]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	store, err := ipam.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	kd := &kubeletDevices{alloc: map[string][]string{
		"ran/du-1/example.com/fh_vf": {"0000:3b:02.1", "0000:3b:02.4"},
		"ran/du-2/example.com/fh_vf": {"0000:3b:02.5"},
	}}
	dp := &devicePath{got: map[string]string{}}
	a := New(Config{Store: store, Networks: netsource.NewDir(netDir), Devices: kd,
		Log:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
		Paths: map[api.PathKind]attach.Path{api.PathSRIOV: dp}})
	ctx := context.Background()
	if err := a.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	netns := netnstest.New(t)
	call := func(cmd, podName, cid, ifName, conf string) *cni.Reply {
		args := "IgnoreUnknown=1;K8S_POD_NAMESPACE=ran;K8S_POD_UID=uid-" + podName
		if podName != "" {
			args += ";K8S_POD_NAME=" + podName
		}
		return a.Dispatch(ctx, &cni.Call{Command: cmd, ContainerID: cid, Netns: netns, IfName: ifName, Args: args, Config: json.RawMessage(conf)})
	}
	attachConf := func(extra string) string {
		return `{"cniVersion":"1.1.0","name":"fh","type":"telcni","network":"fh"` + extra + `}`
	}
	mustOK := func(r *cni.Reply) {
		t.Helper()
		if r.Error != nil {
			t.Fatalf("code %d: %s", r.Error.Code, r.Error.Msg)
		}
	}
	mustErr := func(r *cni.Reply, code uint, parts ...string) {
		t.Helper()
		if r.Error == nil {
			t.Fatalf("succeeded, want code %d", code)
		}
		if r.Error.Code != code {
			t.Errorf("code %d (%s), want %d", r.Error.Code, r.Error.Msg, code)
		}
		for _, p := range parts {
			if !strings.Contains(r.Error.Msg, p) {
				t.Errorf("error %q does not name %q", r.Error.Msg, p)
			}
		}
	}

	// Pod mode: two interfaces on the network get the pod's two devices.
	ann, _ := json.Marshal(map[string]string{api.NetworksAnnotation: `[{"name":"fh","interface":"fh0"},{"name":"fh","interface":"fh1"}]`})
	mustOK(call("ADD", "du-1", "c1", "eth0", `{"cniVersion":"1.1.0","name":"telcni","type":"telcni","runtimeConfig":{"`+PodAnnotationsKey+`":`+string(ann)+`}}`))
	if dp.got["c1/fh0"] != "0000:3b:02.1" || dp.got["c1/fh1"] != "0000:3b:02.4" {
		t.Errorf("pod mode: devices %v, want fh0 0000:3b:02.1 and fh1 0000:3b:02.4 (the kubelet's order)", dp.got)
	}

	// Attachment mode (one ADD per network, as Multus calls): the second
	// attachment of the same pod takes the device the first did not.
	mustOK(call("ADD", "du-1", "c2", "net1", attachConf("")))
	mustOK(call("ADD", "du-1", "c2", "net2", attachConf("")))
	if dp.got["c2/net1"] != "0000:3b:02.1" || dp.got["c2/net2"] != "0000:3b:02.4" {
		t.Errorf("attachment mode: devices %v", dp.got)
	}
	// A retried ADD keeps its device.
	mustOK(call("ADD", "du-1", "c2", "net2", attachConf("")))
	if dp.got["c2/net2"] != "0000:3b:02.4" {
		t.Errorf("retried ADD moved to %s", dp.got["c2/net2"])
	}
	// A third attachment finds both taken.
	mustErr(call("ADD", "du-1", "c2", "net3", attachConf("")), attach.CodeNoFreeDevice, "example.com/fh_vf", "0000:3b:02.1", "taken by its other interfaces")
	// After a DEL the device is free for the next.
	mustOK(call("DEL", "du-1", "c2", "net1", attachConf("")))
	mustOK(call("ADD", "du-1", "c2", "net3", attachConf("")))
	if dp.got["c2/net3"] != "0000:3b:02.1" {
		t.Errorf("after DEL: net3 got %s, want the freed 0000:3b:02.1", dp.got["c2/net3"])
	}

	// runtimeConfig.deviceID (Multus with the device plugin) wins.
	mustOK(call("ADD", "du-2", "c3", "net1", attachConf(`,"runtimeConfig":{"deviceID":"0000:3b:02.7"}`)))
	if dp.got["c3/net1"] != "0000:3b:02.7" {
		t.Errorf("deviceID given: got %s", dp.got["c3/net1"])
	}
	// A pod that requested no device is told how to.
	mustErr(call("ADD", "du-3", "c4", "net1", attachConf("")), attach.CodeNoFreeDevice, "allocated the pod no example.com/fh_vf device", "limits")
	// No pod name: the kubelet cannot be asked.
	mustErr(call("ADD", "", "c5", "net1", attachConf("")), attach.CodeInvalidConfig, "sriov.resourceName example.com/fh_vf", "K8S_POD_NAME")
	// The kubelet unreachable: the error says so and nothing is left.
	kd.err = errors.New("dial unix /var/lib/kubelet/pod-resources/kubelet.sock: connect: no such file or directory")
	mustErr(call("ADD", "du-2", "c6", "net1", attachConf("")), attach.CodeIOFailure, "pod-resources/kubelet.sock")
	var keys []string
	if err := a.forEachRecord(func(r *Attachment) { keys = append(keys, r.Key) }); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if strings.HasPrefix(k, "c4/") || strings.HasPrefix(k, "c5/") || strings.HasPrefix(k, "c6/") {
			t.Errorf("a refused ADD left record %s", k)
		}
	}
}
