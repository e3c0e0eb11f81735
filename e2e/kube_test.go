package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	nadclient "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/clientset/versioned"
	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/internal/kubetest"
	"github.com/telcni/telcni/internal/netnstest"
)

// kubeNode is a simulated cluster node: a netns holding its NIC "up0"
// (cabled to a switch shared by all nodes) and a telcni-agent process
// talking to the test API server.
type kubeNode struct {
	name, netns, socket, dir string
	cmd                      *exec.Cmd
	done                     chan struct{}
}

// lan is a switch netns with a bridge every node's up0 is cabled to: the
// nodes' pods share one L2 segment, with no overlay and no NAT.
func lan(t *testing.T) string {
	t.Helper()
	sw := netnstest.New(t)
	h := netnstest.Handle(t, sw)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	if err := h.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
	return sw
}

func startKubeNode(t *testing.T, env *kubetest.Env, sw, name string) *kubeNode {
	t.Helper()
	n := &kubeNode{name: name, netns: netnstest.New(t), dir: t.TempDir()}
	// up0 in the node, its peer on the switch's bridge.
	netnstest.Wire(t, n.netns, sw, "up0")
	h := netnstest.Handle(t, sw)
	peer, err := h.LinkByName("up0p")
	if err != nil {
		t.Fatal(err)
	}
	br, _ := h.LinkByName("br0")
	port := "p-" + name
	if err := h.LinkSetName(peer, port); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetMaster(peer, br); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Clientset.CoreV1().Nodes().Create(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	n.start(t, env)
	return n
}

func (n *kubeNode) start(t *testing.T, env *kubetest.Env) {
	t.Helper()
	n.socket = filepath.Join(n.dir, "agent.sock")
	_ = os.Remove(n.socket)
	logf, err := os.OpenFile(filepath.Join(n.dir, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	n.cmd = exec.Command(filepath.Join(binDir, "telcni-agent"), "-socket", n.socket, "-state-dir", filepath.Join(n.dir, "state"), "-legacy-state-dir", "",
		"-run-dir", filepath.Join(n.dir, "run"), "-host-netns", n.netns, "-kubeconfig", env.Kubeconfig, "-node-name", n.name,
		"-ipam-gc-interval", "300ms", "-vpp-api-socket", filepath.Join(n.dir, "no-vpp.sock"), "-log-level", "debug")
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.done = make(chan struct{})
	go func() { _ = n.cmd.Wait(); logf.Close(); close(n.done) }() // owned: ends with the process
	t.Cleanup(func() { n.stop() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(n.socket); err == nil {
			return
		}
		select {
		case <-n.done:
			t.Fatalf("agent %s exited:\n%s", n.name, n.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent %s not serving after 30 s:\n%s", n.name, n.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (n *kubeNode) stop() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.done
	}
}

func (n *kubeNode) log() string {
	b, _ := os.ReadFile(filepath.Join(n.dir, "agent.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// kubePod is a pod object in the API server and its netns.
type kubePod struct {
	name, netns string
	uid         string
	node        *kubeNode
}

func (p *kubePod) args() string {
	return fmt.Sprintf("K8S_POD_NAMESPACE=ran;K8S_POD_NAME=%s;K8S_POD_INFRA_CONTAINER_ID=ctr-%s;K8S_POD_UID=%s", p.name, p.name, p.uid)
}

// conf is the cluster's pod-mode CNI config: the annotation comes from the
// API, not from runtimeConfig.
func (p *kubePod) conf() string {
	return fmt.Sprintf(`{"cniVersion":"1.1.0","name":"telcni","type":"telcni","agentSocket":%q}`, p.node.socket)
}

func newKubePod(t *testing.T, cs kubernetes.Interface, n *kubeNode, name, annotation string) *kubePod {
	t.Helper()
	pod, err := cs.CoreV1().Pods("ran").Create(context.Background(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ran", Annotations: map[string]string{api.NetworksAnnotation: annotation}},
		Spec:       corev1.PodSpec{NodeName: n.name, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &kubePod{name: name, netns: netnstest.New(t), uid: string(pod.UID), node: n}
}

// addrs lists the global addresses of the pod's netns by interface.
func addrs(t *testing.T, netns string) map[string][]string {
	t.Helper()
	h := netnstest.Handle(t, netns)
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, l := range links {
		as, _ := h.AddrList(l, netlink.FAMILY_ALL)
		for _, a := range as {
			if a.IP.IsGlobalUnicast() {
				out[l.Attrs().Name] = append(out[l.Attrs().Name], a.IP.String())
			}
		}
	}
	return out
}

var (
	blocksGVR = schema.GroupVersionResource{Group: "telcni.io", Version: "v1alpha1", Resource: "ipblocks"}
	resGVR    = schema.GroupVersionResource{Group: "telcni.io", Version: "v1alpha1", Resource: "ipreservations"}
)

func countObjs(t *testing.T, dyn dynamic.Interface, gvr schema.GroupVersionResource, selector string) int {
	t.Helper()
	l, err := dyn.Resource(gvr).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	return len(l.Items)
}

// Pod mode in a cluster of two simulated nodes, each a telcni-agent
// process: pods and NADs live in the API server, ADD carries only the
// K8S_POD_* args, addresses are unique across the nodes, a fixed address
// held on one node is refused on the other naming the pod, pods on the two
// nodes talk over one L2 segment, network-status matches the netns, DEL
// frees everything, and a deleted node's blocks are freed.
func TestKubePodModeTwoNodes(t *testing.T) {
	env := kubetest.Start(t)
	env.InstallCRDs(t)
	cs := env.Clientset
	ctx := context.Background()
	env.CreateNamespaces(t, "ran", "telcni-system")
	nc := nadclient.NewForConfigOrDie(env.Config)
	for name, cfg := range map[string]string{
		// Fixed addresses below .100, dynamic from .100: the cluster rule.
		"fronthaul":     `{"cniVersion":"1.1.0","type":"telcni","path":"macvlan","master":"up0","ipam":{"subnets":[{"cidr":"10.30.0.0/24","rangeStart":"10.30.0.100"}]}}`,
		"userplane":     `{"cniVersion":"1.1.0","type":"telcni","path":"macvlan","master":"up0","ipam":{"subnets":[{"cidr":"10.31.0.0/24"}]}}`,
		"sriov-foreign": `{"cniVersion":"1.0.0","type":"sriov"}`,
	} {
		if _, err := nc.K8sCniCncfIoV1().NetworkAttachmentDefinitions("ran").Create(ctx, &nadv1.NetworkAttachmentDefinition{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ran"}, Spec: nadv1.NetworkAttachmentDefinitionSpec{Config: cfg}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	sw := lan(t)
	a := startKubeNode(t, env, sw, "node-a")
	b := startKubeNode(t, env, sw, "node-b")

	const perNode = 6
	var pods []*kubePod
	for i := range perNode {
		for _, n := range []*kubeNode{a, b} {
			pods = append(pods, newKubePod(t, cs, n, fmt.Sprintf("du-%s-%d", n.name[5:], i), `[{"name":"fronthaul","interface":"fh0"},{"name":"userplane","interface":"up0"}]`))
		}
	}
	fixedA := newKubePod(t, cs, a, "fixed-a", `[{"name":"fronthaul","interface":"fh0","ips":["10.30.0.5/24"]}]`)
	fixedB := newKubePod(t, cs, b, "fixed-b", `[{"name":"fronthaul","interface":"fh0","ips":["10.30.0.5/24"]}]`)
	foreign := newKubePod(t, cs, a, "foreign", `[{"name":"sriov-foreign"}]`)

	// ADD every pod at once on both nodes.
	var wg sync.WaitGroup
	errs := make([]map[string]any, len(pods))
	for i, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = plugin(t, "ADD", "ctr-"+p.name, p.netns, "eth0", p.args(), p.conf())
		}()
	}
	wg.Wait()
	for i, e := range errs {
		if e != nil {
			t.Fatalf("ADD %s: %v\nagent %s log:\n%s", pods[i].name, e, pods[i].node.name, pods[i].node.log())
		}
	}
	if _, e := plugin(t, "ADD", "ctr-fixed-a", fixedA.netns, "eth0", fixedA.args(), fixedA.conf()); e != nil {
		t.Fatalf("ADD fixed-a: %v", e)
	}
	_, e := plugin(t, "ADD", "ctr-fixed-b", fixedB.netns, "eth0", fixedB.args(), fixedB.conf())
	if e == nil || e["code"] != float64(101) || !strings.Contains(fmt.Sprint(e["msg"]), "ran/fixed-a") || !strings.Contains(fmt.Sprint(e["msg"]), "node-a") {
		t.Fatalf("fixed-b asking for fixed-a's address on another node: %v, want code 101 naming ran/fixed-a on node-a", e)
	}
	if l := addrs(t, fixedB.netns); len(l) != 0 {
		t.Errorf("the refused pod kept interfaces: %v", l)
	}
	_, e = plugin(t, "ADD", "ctr-foreign", foreign.netns, "eth0", foreign.args(), foreign.conf())
	if e == nil || e["code"] != float64(7) || !strings.Contains(fmt.Sprint(e["msg"]), `ran/sriov-foreign is not a telcni network`) {
		t.Errorf("a pod asking for another plugin's NAD: %v, want code 7 naming it", e)
	}

	// Unique addresses across both nodes; the netns and network-status agree.
	seen := map[string]string{}
	for _, p := range append(slices.Clone(pods), fixedA) {
		got := addrs(t, p.netns)
		obj, err := cs.CoreV1().Pods("ran").Get(ctx, p.name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var st []api.NetworkStatus
		if err := json.Unmarshal([]byte(obj.Annotations[api.NetworkStatusAnnotation]), &st); err != nil {
			t.Fatalf("%s: network-status %q: %v", p.name, obj.Annotations[api.NetworkStatusAnnotation], err)
		}
		if len(st) != len(got) {
			t.Errorf("%s: network-status has %d interfaces, the netns %d (%v)", p.name, len(st), len(got), got)
		}
		for _, s := range st {
			if !slices.Equal(s.IPs, got[s.Interface]) {
				t.Errorf("%s: network-status %s %v, netns %v", p.name, s.Interface, s.IPs, got[s.Interface])
			}
			for _, ip := range s.IPs {
				if other, dup := seen[s.Name+" "+ip]; dup {
					t.Errorf("%s given twice: %s and %s", ip, other, p.name)
				}
				seen[s.Name+" "+ip] = p.name
			}
		}
	}
	if len(seen) != 2*len(pods)+1 {
		t.Errorf("%d distinct addresses, want %d", len(seen), 2*len(pods)+1)
	}
	// Pods on the two nodes reach each other on one L2 segment.
	from, to := pods[0], pods[1] // node-a, node-b
	dst := netip.MustParseAddr(addrs(t, to.netns)["fh0"][0])
	ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if src, err := netnstest.UDPEcho(ectx, from.netns, to.netns, dst); err != nil {
		t.Errorf("UDP %s (node-a) -> %s (node-b): %v", from.name, dst, err)
	} else if !strings.HasPrefix(src.String(), "10.30.0.") {
		t.Errorf("the peer saw source %s: want the pod's own address (no NAT)", src)
	}
	// A breaking change of a NAD while pods use it: the next ADD is refused
	// and the NAD gets a Warning event saying why.
	fh, err := nc.K8sCniCncfIoV1().NetworkAttachmentDefinitions("ran").Get(ctx, "fronthaul", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fh.Spec.Config = strings.Replace(fh.Spec.Config, `"master":"up0"`, `"master":"up9"`, 1)
	if _, err := nc.K8sCniCncfIoV1().NetworkAttachmentDefinitions("ran").Update(ctx, fh, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	late := newKubePod(t, cs, a, "late", `[{"name":"fronthaul","interface":"fh0"}]`)
	var lateErr map[string]any
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, lateErr = plugin(t, "ADD", "ctr-late", late.netns, "eth0", late.args(), late.conf()); lateErr != nil {
			break // the agent's cache has the change
		}
		plugin(t, "DEL", "ctr-late", late.netns, "eth0", late.args(), late.conf())
	}
	if lateErr == nil || lateErr["code"] != float64(7) || !strings.Contains(fmt.Sprint(lateErr["msg"]), "master up0 -> up9") {
		t.Errorf("ADD after a breaking NAD change: %v, want code 7 naming the change", lateErr)
	}
	var warned bool
	for deadline := time.Now().Add(10 * time.Second); !warned && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		evs, err := cs.CoreV1().Events("ran").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=fronthaul"})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs.Items {
			warned = warned || e.Reason == "BreakingChangeRefused" && e.InvolvedObject.Kind == "NetworkAttachmentDefinition"
		}
	}
	if !warned {
		t.Error("no BreakingChangeRefused event on the NAD")
	}

	dyn := dynamic.NewForConfigOrDie(env.Config)
	if n := countObjs(t, dyn, resGVR, ""); n != 1 {
		t.Errorf("%d IPReservations, want fixed-a's only", n)
	}

	// DEL everything: no reservation, no address left.
	for _, p := range append(slices.Clone(pods), fixedA, fixedB, foreign, late) {
		if _, e := plugin(t, "DEL", "ctr-"+p.name, p.netns, "eth0", p.args(), p.conf()); e != nil {
			t.Errorf("DEL %s: %v", p.name, e)
		}
	}
	if n := countObjs(t, dyn, resGVR, ""); n != 0 {
		t.Errorf("%d IPReservations after DEL, want 0", n)
	}
	for _, n := range []*kubeNode{a, b} {
		if out := telcnictl(t, n.socket, "ipam"); !strings.Contains(out, "(0 addresses held)") {
			t.Errorf("%s still holds addresses after DEL:\n%s", n.name, out)
		}
	}
	// node-b is removed from the cluster: its blocks are freed.
	if countObjs(t, dyn, blocksGVR, "telcni.io/node=node-b") == 0 {
		t.Fatal("node-b claimed no block")
	}
	b.stop()
	if err := cs.CoreV1().Nodes().Delete(ctx, "node-b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for countObjs(t, dyn, blocksGVR, "telcni.io/node=node-b") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("node-b's blocks not freed 30 s after its Node was deleted\nagent node-a log:\n%s", a.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func telcnictl(t *testing.T, socket string, args ...string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(binDir, "telcnictl"), append([]string{"-socket", socket}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("telcnictl %v: %v\n%s", args, err, out)
	}
	return string(out)
}
