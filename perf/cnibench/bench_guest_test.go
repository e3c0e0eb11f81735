package cnibench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"

	"github.com/telcni/telcni/agent"
	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/internal/agenttest"
	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/kernelguest"
	"github.com/telcni/telcni/kernelpath"
	"github.com/telcni/telcni/netsource"
)

// EnvBench turns the benchmark on (it is not part of the test suite).
const EnvBench = "TELCNI_BENCH"

var networks = map[string]string{
	"ipv.json": `{"name":"ipv","path":"ipvlan","master":"bench0","ipam":{"subnets":[{"cidr":"10.61.0.0/16"}]}}`,
	"vl.json":  `{"name":"vl","path":"vlan","master":"bench1","vlan":100,"ipam":{"subnets":[{"cidr":"10.62.0.0/16"}]}}`,
	"mac.json": `{"name":"mac","path":"macvlan","master":"bench1","ipam":{"subnets":[{"cidr":"10.63.0.0/16","rangeStart":"10.63.1.0"}]}}`,
}

func TestGuestCNIBenchmark(t *testing.T) {
	kernelguest.Require(t)
	if os.Getenv(EnvBench) != "1" {
		t.Skip("benchmark: run `make bench-kernel`")
	}
	bin, _ := filepath.Abs("testdata/bin")
	for _, p := range []string{"telcni", "ipvlan", "macvlan", "vlan", "host-local"} {
		if _, err := os.Stat(filepath.Join(bin, p)); err != nil {
			t.Fatalf("plugin %s missing from %s: run `make bench-kernel`, which builds them", p, bin)
		}
	}
	// Every ADD and DEL execs plugin binaries; under TCG emulation that is
	// slow, so the default run is short. TELCNI_BENCH_ITERS overrides it.
	iters := 30
	if v, err := strconv.Atoi(os.Getenv("TELCNI_BENCH_ITERS")); err == nil && v > 0 {
		iters = v
	}
	// The guest's own netns is the node: the reference plugins look their
	// master up where they run. bench0 and bench1 are veths made here.
	// ipvlan and macvlan cannot share a master (the kernel gives a device
	// one of them), so ipvlan hangs off bench0, VLAN and macvlan off bench1.
	for _, nic := range []string{"bench0", "bench1"} {
		netnstest.Uplink(t, "/proc/self/ns/net", nic)
	}
	socket := startAgent(t)

	cni := libcni.NewCNIConfigWithCacheDir([]string{bin}, t.TempDir(), nil)
	const annotation = `[{"name":"ipv"},{"name":"vl"},{"name":"mac","ips":["10.63.0.%d/16"]}]`
	telcniConf := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"telcni","plugins":[{"type":"telcni","agentSocket":%q,"capabilities":{"io.kubernetes.cri.pod-annotations":true}}]}`, socket)
	refConfs := []string{
		`{"cniVersion":"1.0.0","name":"ref-ipvlan","plugins":[{"type":"ipvlan","master":"bench0","mode":"l2","ipam":{"type":"host-local","dataDir":"DATA","ranges":[[{"subnet":"10.71.0.0/16"}]]}}]}`,
		`{"cniVersion":"1.0.0","name":"ref-vlan","plugins":[{"type":"vlan","master":"bench1","vlanId":200,"ipam":{"type":"host-local","dataDir":"DATA","ranges":[[{"subnet":"10.72.0.0/16"}]]}}]}`,
		`{"cniVersion":"1.0.0","name":"ref-macvlan","plugins":[{"type":"macvlan","master":"bench1","mode":"bridge","capabilities":{"ips":true},"ipam":{"type":"host-local","dataDir":"DATA","ranges":[[{"subnet":"10.73.0.0/16"}]]}}]}`,
	}
	data := t.TempDir()
	var refLists []*libcni.NetworkConfigList
	for _, c := range refConfs {
		c = strings.ReplaceAll(c, "DATA", data)
		l, err := libcni.ConfListFromBytes([]byte(c))
		if err != nil {
			t.Fatal(err)
		}
		refLists = append(refLists, l)
	}
	telcniList, err := libcni.ConfListFromBytes([]byte(telcniConf))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var tel, ref []time.Duration
	for i := 0; i < iters; i++ {
		pod := netnstest.New(t)
		// telcni: one ADD makes all three interfaces (pod mode).
		rt := &libcni.RuntimeConf{ContainerID: fmt.Sprintf("t%d", i), NetNS: pod, IfName: "eth0",
			Args:           [][2]string{{"K8S_POD_NAMESPACE", "bench"}, {"K8S_POD_NAME", fmt.Sprintf("p%d", i)}},
			CapabilityArgs: map[string]any{"io.kubernetes.cri.pod-annotations": map[string]string{api.NetworksAnnotation: fmt.Sprintf(annotation, 2+i%200)}}}
		start := time.Now()
		if _, err := cni.AddNetworkList(ctx, telcniList, rt); err != nil {
			t.Fatalf("telcni ADD: %v", err)
		}
		if err := cni.DelNetworkList(ctx, telcniList, rt); err != nil {
			t.Fatalf("telcni DEL: %v", err)
		}
		tel = append(tel, time.Since(start))

		// Reference: three plugin calls, one per interface, as a runtime (or
		// Multus) would make them.
		pod2 := netnstest.New(t)
		start = time.Now()
		var rts []*libcni.RuntimeConf
		for j, l := range refLists {
			r := &libcni.RuntimeConf{ContainerID: fmt.Sprintf("r%d", i), NetNS: pod2, IfName: fmt.Sprintf("net%d", j+1)}
			if j == 2 {
				r.CapabilityArgs = map[string]any{"ips": []string{fmt.Sprintf("10.73.0.%d/16", 2+i%200)}}
			}
			if _, err := cni.AddNetworkList(ctx, l, r); err != nil {
				t.Fatalf("reference %s ADD: %v", l.Name, err)
			}
			rts = append(rts, r)
		}
		for j, l := range refLists {
			if err := cni.DelNetworkList(ctx, l, rts[j]); err != nil {
				t.Fatalf("reference %s DEL: %v", l.Name, err)
			}
		}
		ref = append(ref, time.Since(start))
	}
	tp50, tp99 := percentiles(tel)
	rp50, rp99 := percentiles(ref)
	t.Logf("pod with 3 interfaces (ipvlan + vlan + macvlan, 1 fixed IP), ADD+DEL, %d pods each, interleaved", iters)
	t.Logf("telcni     p50 %8v  p99 %8v", tp50, tp99)
	t.Logf("reference  p50 %8v  p99 %8v", rp50, rp99)
	fmt.Printf("cni-latency-ratio p50=%.2f p99=%.2f (telcni / reference plugins; <1 is faster)\n",
		float64(tp50)/float64(rp50), float64(tp99)/float64(rp99))
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2], s[(len(s)*99)/100]
}

// startAgent serves telcni's agent in this process, with the guest's own
// netns as the node.
func startAgent(t *testing.T) string {
	t.Helper()
	store := agenttest.Store(t)
	kernel, err := kernelpath.New(agenttest.Log(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kernel.Close)
	paths := map[api.PathKind]attach.Path{}
	for _, k := range kernelpath.Kinds() {
		paths[k] = kernel
	}
	a := agent.New(agent.Config{Store: store, Networks: netsource.NewDir(agenttest.NetworkDir(t, networks)), Paths: paths, Log: agenttest.Log()})
	return agenttest.Serve(t, a)
}
