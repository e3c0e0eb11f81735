package kubebench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	current "github.com/containernetworking/cni/pkg/types/100"
	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	nadclient "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/telcni/telcni/agent"
	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/cni"
	"github.com/telcni/telcni/internal/agenttest"
	"github.com/telcni/telcni/internal/kubetest"
	"github.com/telcni/telcni/ipam"
	"github.com/telcni/telcni/kube"
)

// nullPath makes no interface: the benchmark measures IPAM and API cost.
type nullPath struct{ n atomic.Uint64 }

func (p *nullPath) Attach(_ context.Context, req *attach.Request) (*attach.Interface, error) {
	i := p.n.Add(1)
	return &attach.Interface{Name: req.IfName, MAC: fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", byte(i>>24), byte(i>>16), byte(i>>8), byte(i))}, nil
}
func (p *nullPath) Detach(context.Context, *attach.Record) error { return nil }
func (p *nullPath) Check(context.Context, *attach.Record) error  { return nil }

// counter counts the API requests the agents make.
type counter struct {
	rt http.RoundTripper
	n  *atomic.Int64
}

func (c counter) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.rt.RoundTrip(r)
}

type simNode struct {
	name  string
	agent *agent.Agent
	store *ipam.Store
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestKubeIPAMScale runs pods × 3 networks over nodes against the real API
// server: two networks dynamic, one with a fixed address per pod. It fails
// on any duplicate address, any failed call and anything left after DEL,
// and prints the figures on one line (kube-bench ...).
func TestKubeIPAMScale(t *testing.T) {
	pods := envInt("TELCNI_BENCH_PODS", 60)
	nodes := envInt("TELCNI_BENCH_NODES", 3)
	parallel := envInt("TELCNI_BENCH_PARALLEL", 8) // concurrent ADDs per node, as a kubelet's
	env := kubetest.Start(t)
	env.InstallCRDs(t)
	ctx := context.Background()
	cs := env.Clientset
	for _, ns := range []string{"ran", "telcni-system"} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	nc := nadclient.NewForConfigOrDie(env.Config)
	for name, cidr := range map[string]string{"fronthaul": "10.100.0.0/16", "userplane": "10.101.0.0/16", "oam": "10.102.0.0/16"} {
		cfg := fmt.Sprintf(`{"type":"telcni","path":"macvlan","master":"up0","ipam":{"subnets":[{"cidr":%q,"rangeStart":"%s"}]}}`,
			cidr, netip.MustParsePrefix(cidr).Addr().Next().Next().Next().String()) // .3 on: below it nothing
		if name == "oam" { // fixed addresses below the dynamic range
			cfg = fmt.Sprintf(`{"type":"telcni","path":"macvlan","master":"up0","ipam":{"subnets":[{"cidr":%q,"rangeStart":"10.102.128.0"}]}}`, cidr)
		}
		if _, err := nc.K8sCniCncfIoV1().NetworkAttachmentDefinitions("ran").Create(ctx, &nadv1.NetworkAttachmentDefinition{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ran"}, Spec: nadv1.NetworkAttachmentDefinitionSpec{Config: cfg}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Pod objects first (not timed): the scheduler's part.
	uids := make([]string, pods)
	for i := range pods {
		ann := fmt.Sprintf(`[{"name":"fronthaul","interface":"fh0"},{"name":"userplane","interface":"up0"},{"name":"oam","interface":"oam0","ips":["10.102.%d.%d/16"]}]`, i/250, i%250+1)
		p, err := cs.CoreV1().Pods("ran").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("du-%d", i), Namespace: "ran", Annotations: map[string]string{api.NetworksAnnotation: ann}},
			Spec:       corev1.PodSpec{NodeName: fmt.Sprintf("node-%d", i%nodes), Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		uids[i] = string(p.UID)
	}
	var requests atomic.Int64
	rc := rest.CopyConfig(env.Config)
	rc.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return counter{rt: rt, n: &requests} }
	sim := make([]*simNode, nodes)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i := range nodes {
		name := fmt.Sprintf("node-%d", i)
		if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		c, err := kube.New(rc, kube.Config{NodeName: name, Log: agenttest.Log()})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(runCtx); err != nil {
			t.Fatal(err)
		}
		store, err := ipam.Open(filepath.Join(t.TempDir(), "state.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		store.UseBlocks()
		a := agent.New(agent.Config{Store: store, Networks: c.Networks(), Log: agenttest.Log(),
			Paths: map[api.PathKind]attach.Path{api.PathMACVLAN: &nullPath{}}, Pods: c, Status: c, ClusterIPAM: c})
		if err := a.Recover(ctx); err != nil {
			t.Fatal(err)
		}
		sim[i] = &simNode{name: name, agent: a, store: store}
	}
	// Wait for every node's caches to see every pod and NAD.
	time.Sleep(500 * time.Millisecond)
	call := func(cmd string, i int) (*cni.Reply, time.Duration) {
		start := time.Now()
		r := sim[i%nodes].agent.Dispatch(ctx, &cni.Call{Command: cmd, ContainerID: fmt.Sprintf("ctr-%d", i), Netns: "/proc/self/ns/net", IfName: "eth0",
			Args:   fmt.Sprintf("K8S_POD_NAMESPACE=ran;K8S_POD_NAME=du-%d;K8S_POD_UID=%s", i, uids[i]),
			Config: json.RawMessage(`{"cniVersion":"1.1.0","name":"telcni","type":"telcni"}`)})
		return r, time.Since(start)
	}
	run := func(cmd string) ([]time.Duration, []*cni.Reply, time.Duration) {
		lat := make([]time.Duration, pods)
		replies := make([]*cni.Reply, pods)
		start := time.Now()
		var wg sync.WaitGroup
		for n := range nodes {
			work := make(chan int)
			for range parallel {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range work {
						replies[i], lat[i] = call(cmd, i)
					}
				}()
			}
			go func() { // owned: closes work when every pod of node n is handed out
				for i := n; i < pods; i += nodes {
					work <- i
				}
				close(work)
			}()
		}
		wg.Wait()
		return lat, replies, time.Since(start)
	}
	before := requests.Load()
	addLat, replies, addTotal := run("ADD")
	addRequests := requests.Load() - before
	seen := map[string]int{}
	dups := 0
	for i, r := range replies {
		if r.Error != nil {
			t.Fatalf("ADD du-%d: code %d: %s", i, r.Error.Code, r.Error.Msg)
		}
		var res current.Result
		if err := json.Unmarshal(r.Result, &res); err != nil || len(res.IPs) != 3 {
			t.Fatalf("ADD du-%d: result %s (%v)", i, r.Result, err)
		}
		for _, ip := range res.IPs {
			if prev, ok := seen[ip.Address.IP.String()]; ok {
				dups++
				t.Errorf("%s given to du-%d and du-%d", ip.Address.IP, prev, i)
			}
			seen[ip.Address.IP.String()] = i
		}
	}
	before = requests.Load()
	delLat, replies, delTotal := run("DEL")
	delRequests := requests.Load() - before
	for i, r := range replies {
		if r.Error != nil {
			t.Errorf("DEL du-%d: code %d: %s", i, r.Error.Code, r.Error.Msg)
		}
	}
	leaked := 0
	for _, n := range sim {
		_ = n.store.View(func(tx *ipam.Tx) error { leaked += len(tx.Allocations()) + len(tx.RecordKeys()); return nil })
	}
	dyn := dynamic.NewForConfigOrDie(env.Config)
	res, err := dyn.Resource(schema.GroupVersionResource{Group: "telcni.io", Version: "v1alpha1", Resource: "ipreservations"}).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := dyn.Resource(schema.GroupVersionResource{Group: "telcni.io", Version: "v1alpha1", Resource: "ipblocks"}).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if leaked != 0 || len(res.Items) != 0 {
		t.Errorf("after DEL: %d local addresses or records, %d reservations left", leaked, len(res.Items))
	}
	if dups != 0 {
		t.Errorf("%d duplicate addresses", dups)
	}
	fmt.Printf("kube-bench pods=%d networks=3 nodes=%d total_s=%.2f add_s=%.2f del_s=%.2f add_p50_ms=%.1f add_p99_ms=%.1f del_p50_ms=%.1f del_p99_ms=%.1f api_requests_per_pod_add=%.2f api_requests_per_pod_del=%.2f blocks=%d duplicates=%d leaked_addresses=%d leaked_reservations=%d\n",
		pods, nodes, (addTotal + delTotal).Seconds(), addTotal.Seconds(), delTotal.Seconds(),
		ms(pct(addLat, 50)), ms(pct(addLat, 99)), ms(pct(delLat, 50)), ms(pct(delLat, 99)),
		float64(addRequests)/float64(pods), float64(delRequests)/float64(pods), len(blocks.Items), dups, leaked, len(res.Items))
}

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
