package cnibench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"

	"github.com/telcni/telcni/agent"
	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/internal/agenttest"
	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/ipam"
	"github.com/telcni/telcni/kernelpath"
	"github.com/telcni/telcni/netsource"
)

// hostNetworks are three macvlan networks on the stand-in NIC bench0 (the
// host kernel has macvlan, not ipvlan or VLAN).
var hostNetworks = map[string]string{
	"m1.json": `{"name":"m1","path":"macvlan","master":"bench0","ipam":{"subnets":[{"cidr":"10.81.0.0/16"}]}}`,
	"m2.json": `{"name":"m2","path":"macvlan","master":"bench0","ipam":{"subnets":[{"cidr":"10.82.0.0/16"}]}}`,
	"m3.json": `{"name":"m3","path":"macvlan","master":"bench0","ipam":{"subnets":[{"cidr":"10.83.0.0/16"}]}}`,
}

type lat struct{ add, del []time.Duration }

// TestHostCNIBenchmark measures, on the host kernel and in one run,
// telcni's ADD and DEL of a pod with three macvlan interfaces against the
// reference chain (macvlan + host-local, one conflist per interface), all
// through libcni with real plugin processes: telcni in attachment mode
// (three conflists, as the reference) and in pod mode (one ADD, three
// interfaces). Then a burst of 100 pods in pod mode at once.
func TestHostCNIBenchmark(t *testing.T) {
	if os.Getenv(EnvBench) != "1" {
		t.Skip("benchmark: run `make bench-cni`")
	}
	bin, _ := filepath.Abs("testdata/bin")
	for _, p := range []string{"telcni", "macvlan", "host-local", "noopcni"} {
		if _, err := os.Stat(filepath.Join(bin, p)); err != nil {
			t.Fatalf("plugin %s missing from %s: run `make bench-cni`, which builds them", p, bin)
		}
	}
	iters := 30
	if v, err := strconv.Atoi(os.Getenv("TELCNI_BENCH_ITERS")); err == nil && v > 0 {
		iters = v
	}
	// The node: a netns of its own with the stand-in NIC bench0. The
	// reference plugins find their master in the netns they run in, so
	// every libcni call runs on a thread inside the node (its children
	// inherit it); telcni's agent is told where the node is.
	node := netnstest.New(t)
	netnstest.Uplink(t, node, "bench0")
	socket := startHostAgent(t, node)
	cni := libcni.NewCNIConfigWithCacheDir([]string{bin}, t.TempDir(), nil)
	data := t.TempDir()
	conf := func(s string) *libcni.NetworkConfigList {
		l, err := libcni.ConfListFromBytes([]byte(strings.ReplaceAll(strings.ReplaceAll(s, "DATA", data), "SOCK", socket)))
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	var ref, att, noop []*libcni.NetworkConfigList
	for i := 1; i <= 3; i++ {
		ref = append(ref, conf(fmt.Sprintf(`{"cniVersion":"1.1.0","name":"ref%d","plugins":[{"type":"macvlan","master":"bench0","mode":"bridge","ipam":{"type":"host-local","dataDir":"DATA","ranges":[[{"subnet":"10.9%d.0.0/16"}]]}}]}`, i, i)))
		att = append(att, conf(fmt.Sprintf(`{"cniVersion":"1.1.0","name":"att%d","plugins":[{"type":"telcni","agentSocket":"SOCK","network":"m%d"}]}`, i, i)))
		noop = append(noop, conf(fmt.Sprintf(`{"cniVersion":"1.1.0","name":"noop%d","plugins":[{"type":"noopcni"}]}`, i)))
	}
	pod := conf(`{"cniVersion":"1.1.0","name":"telcni","plugins":[{"type":"telcni","agentSocket":"SOCK","capabilities":{"io.kubernetes.cri.pod-annotations":true}}]}`)
	const annotation = `[{"name":"m1","interface":"net1"},{"name":"m2","interface":"net2"},{"name":"m3","interface":"net3"}]`
	podRT := func(id, netns string) *libcni.RuntimeConf {
		return &libcni.RuntimeConf{ContainerID: id, NetNS: netns, IfName: "eth0",
			Args:           [][2]string{{"K8S_POD_NAMESPACE", "bench"}, {"K8S_POD_NAME", id}},
			CapabilityArgs: map[string]any{"io.kubernetes.cri.pod-annotations": map[string]string{api.NetworksAnnotation: annotation}}}
	}
	ctx := context.Background()
	// chain ADDs then DELs one interface per conflist, as a runtime (or
	// Multus) does for three attachments.
	chain := func(lists []*libcni.NetworkConfigList, id, netns string, l *lat) error {
		rts := make([]*libcni.RuntimeConf, len(lists))
		start := time.Now()
		for j, cl := range lists {
			rts[j] = &libcni.RuntimeConf{ContainerID: id, NetNS: netns, IfName: fmt.Sprintf("net%d", j+1)}
			if _, err := cni.AddNetworkList(ctx, cl, rts[j]); err != nil {
				return fmt.Errorf("%s ADD: %w", cl.Name, err)
			}
		}
		l.add = append(l.add, time.Since(start))
		start = time.Now()
		for j, cl := range lists {
			if err := cni.DelNetworkList(ctx, cl, rts[j]); err != nil {
				return fmt.Errorf("%s DEL: %w", cl.Name, err)
			}
		}
		l.del = append(l.del, time.Since(start))
		return nil
	}
	var refL, attL, podL, noopL lat
	err := netnstest.Do(node, func() error {
		for i := range iters { // interleaved, so that drift hits all arms alike
			if err := chain(ref, fmt.Sprintf("r%d", i), netnstest.New(t), &refL); err != nil {
				return err
			}
			if err := chain(att, fmt.Sprintf("a%d", i), netnstest.New(t), &attL); err != nil {
				return err
			}
			if err := chain(noop, fmt.Sprintf("n%d", i), netnstest.New(t), &noopL); err != nil {
				return err
			}
			rt := podRT(fmt.Sprintf("p%d", i), netnstest.New(t))
			start := time.Now()
			if _, err := cni.AddNetworkList(ctx, pod, rt); err != nil {
				return fmt.Errorf("pod-mode ADD: %w", err)
			}
			podL.add = append(podL.add, time.Since(start))
			start = time.Now()
			if err := cni.DelNetworkList(ctx, pod, rt); err != nil {
				return fmt.Errorf("pod-mode DEL: %w", err)
			}
			podL.del = append(podL.del, time.Since(start))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	report := func(name string, l lat) {
		a50, a99 := percentiles(l.add)
		d50, d99 := percentiles(l.del)
		t.Logf("%-26s ADD p50 %7.2f ms p99 %7.2f ms   DEL p50 %7.2f ms p99 %7.2f ms", name, ms(a50), ms(a99), ms(d50), ms(d99))
	}
	t.Logf("pod with 3 macvlan interfaces, %d pods each, interleaved, host kernel", iters)
	report("reference (3 conflists)", refL)
	report("telcni attachment (3)", attL)
	report("telcni pod mode (1 ADD)", podL)
	report("no-op Go plugin (3)", noopL)
	ratio := func(l lat) string {
		a50, a99 := percentiles(l.add)
		d50, d99 := percentiles(l.del)
		r50, r99 := percentiles(refL.add)
		rd50, rd99 := percentiles(refL.del)
		return fmt.Sprintf("add_p50=%.2f add_p99=%.2f del_p50=%.2f del_p99=%.2f", ratio(a50, r50), ratio(a99, r99), ratio(d50, rd50), ratio(d99, rd99))
	}
	fmt.Printf("cni-ratio %s (telcni attachment mode / reference chain; <1 is faster)\n", ratio(attL))
	fmt.Printf("cni-ratio-pod %s (telcni pod mode / reference chain)\n", ratio(podL))
	fmt.Printf("cni-floor %s (a Go plugin doing nothing, 3 conflists / reference chain: attachment mode's floor)\n", ratio(noopL))

	// The burst: 100 pods × 3 interfaces in pod mode, all at once.
	const burst = 100
	netnses := make([]string, burst)
	for i := range netnses {
		netnses[i] = netnstest.New(t)
	}
	rss0 := rssMB()
	start := time.Now()
	errs := make([]error, burst)
	var wg sync.WaitGroup
	for i := range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = netnstest.Do(node, func() error {
				_, err := cni.AddNetworkList(ctx, pod, podRT(fmt.Sprintf("b%d", i), netnses[i]))
				return err
			})
		}()
	}
	wg.Wait()
	took := time.Since(start)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("burst pod %d: %v", i, err)
		}
	}
	rss1 := rssMB()
	fmt.Printf("cni-burst pods=%d interfaces=%d add_s=%.2f rss_mb=%.0f (before %.0f; the test process, agent included)\n", burst, 3*burst, took.Seconds(), rss1, rss0)
	for i := range burst {
		if err := netnstest.Do(node, func() error { return cni.DelNetworkList(ctx, pod, podRT(fmt.Sprintf("b%d", i), netnses[i])) }); err != nil {
			t.Errorf("burst DEL %d: %v", i, err)
		}
	}
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// rssMB is this process's resident set (VmRSS).
func rssMB() float64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// tmpfsStore opens the agent's store on a tmpfs, where the agent keeps it
// (-state-dir /run/telcni/state; /run is a tmpfs on nodes, not on these
// test machines, hence /dev/shm).
func tmpfsStore(t *testing.T) *ipam.Store {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "telcni-bench-")
	if err != nil {
		t.Fatalf("state dir on a tmpfs: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s, err := ipam.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// startHostAgent serves telcni's agent in this process, with node as the
// netns holding the masters.
func startHostAgent(t *testing.T, node string) string {
	t.Helper()
	kernel, err := kernelpath.New(agenttest.Log(), node)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kernel.Close)
	paths := map[api.PathKind]attach.Path{}
	for _, k := range kernelpath.Kinds() {
		paths[k] = kernel
	}
	log := agenttest.Log()
	if os.Getenv("TELCNI_BENCH_TRACE") == "1" { // each call's phases, to stderr
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	a := agent.New(agent.Config{Store: tmpfsStore(t), Networks: netsource.NewDir(agenttest.NetworkDir(t, hostNetworks)), Paths: paths, Log: log})
	return agenttest.Serve(t, a)
}
