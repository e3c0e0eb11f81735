package kubelet

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	nadclient "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/internal/kubetest"
	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/internal/testbin"
)

// cniVersion of the node's conflist: containerd 1.6 (libcni 1.1) knows no
// result version above 1.0.0 ("plugin type=\"telcni\" failed (add):
// unsupported CNI result version \"1.1.0\"" with 1.1.0); the agent answers in
// the caller's version.
const cniVersion = "1.0.0"

var binDir string

func TestMain(m *testing.M) {
	testbin.Main(m, &binDir, map[string]string{
		"github.com/telcni/telcni/cmd/telcni":       "telcni",
		"github.com/telcni/telcni/cmd/telcni-agent": "telcni-agent",
		"github.com/telcni/telcni/cmd/telcnictl":    "telcnictl",
		testbin.Plugins + "main/loopback":           "loopback",
	})
}

// parts are the binaries a node needs.
type parts struct {
	kubelet, containerd, ctr, runc, busybox string
}

// requireParts finds the kubelet (KUBELET_BIN, .cache/kube/bin/kubelet),
// containerd, its runc shim, ctr, runc and a static busybox, and the test
// API server; it skips naming what is missing (fails with
// TELCNI_REQUIRE_KUBELET=1).
func requireParts(t *testing.T) parts {
	t.Helper()
	var p parts
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	p.kubelet = os.Getenv("KUBELET_BIN")
	if p.kubelet == "" {
		p.kubelet, _ = filepath.Abs("../../.cache/kube/bin/kubelet")
	}
	if fi, err := os.Stat(p.kubelet); err != nil || fi.Mode()&0o111 == 0 {
		missing = append(missing, "kubelet ("+p.kubelet+")")
	}
	look := func(bin string) string {
		path, err := exec.LookPath(bin)
		if err != nil {
			missing = append(missing, bin)
		}
		return path
	}
	p.containerd, p.ctr, p.runc = look("containerd"), look("ctr"), look("runc")
	look("containerd-shim-runc-v2")
	p.busybox = "/bin/busybox"
	if out, err := exec.Command("file", "-L", p.busybox).Output(); err == nil && !strings.Contains(string(out), "statically linked") {
		missing = append(missing, "a static busybox (busybox-static)")
	} else if _, err := os.Stat(p.busybox); err != nil {
		missing = append(missing, "busybox-static")
	}
	if _, _, m := kubetest.Binaries(); m != "" {
		missing = append(missing, m)
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("needs %s: run `make deps-kubelet deps-kube` (as root)", strings.Join(missing, ", "))
		if os.Getenv("TELCNI_REQUIRE_KUBELET") == "1" {
			t.Fatal(msg + " (TELCNI_REQUIRE_KUBELET=1: this suite may not skip)")
		}
		t.Skip(msg)
	}
	return p
}

var (
	resGVR = schema.GroupVersionResource{Group: "telcni.io", Version: "v1alpha1", Resource: "ipreservations"}
	inetRE = regexp.MustCompile(`^\d+: (\S+)\s+inet (\d+\.\d+\.\d+\.\d+)/\d+`)
)

const podNS = "ran"

// cluster sets up the API server with telcni's CRDs and the networks: eth0
// on podnet (the conflist's defaultNetwork), and fronthaul and userplane:
// macvlan networks on the node's stand-in NICs up0, up1 and up2.
func cluster(t *testing.T) *kubetest.Env {
	t.Helper()
	env := kubetest.Start(t)
	env.InstallCRDs(t)
	ctx := context.Background()
	for _, ns := range []string{podNS, "telcni-system"} {
		if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	nc := nadclient.NewForConfigOrDie(env.Config)
	for name, cfg := range map[string]string{
		"podnet":    `{"cniVersion":"1.1.0","type":"telcni","path":"macvlan","master":"up0","ipam":{"subnets":[{"cidr":"10.40.0.0/24"}]}}`,
		"fronthaul": `{"cniVersion":"1.1.0","type":"telcni","path":"macvlan","master":"up1","ipam":{"subnets":[{"cidr":"10.41.0.0/24","rangeStart":"10.41.0.100"}]}}`,
		"userplane": `{"cniVersion":"1.1.0","type":"telcni","path":"macvlan","master":"up2","ipam":{"subnets":[{"cidr":"10.42.0.0/24"}]}}`,
	} {
		if _, err := nc.K8sCniCncfIoV1().NetworkAttachmentDefinitions(podNS).Create(ctx, &nadv1.NetworkAttachmentDefinition{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: podNS}, Spec: nadv1.NetworkAttachmentDefinitionSpec{Config: cfg}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return env
}

func (n *node) createPod(t *testing.T, name, annotation string) {
	t.Helper()
	no := false
	// Not 0: a pod deleted with a grace period of 0 leaves the API at once
	// and the kubelet tears it down later; with 1 the kubelet removes the
	// object once the pod is torn down (sandbox stopped, CNI DEL done).
	grace := int64(1)
	_, err := n.env.Clientset.CoreV1().Pods(podNS).Create(context.Background(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: podNS, Annotations: map[string]string{api.NetworksAnnotation: annotation}},
		Spec: corev1.PodSpec{
			NodeName:                      n.name,
			AutomountServiceAccountToken:  &no,
			TerminationGracePeriodSeconds: &grace,
			EnableServiceLinks:            &no,
			Containers: []corev1.Container{{Name: "c", Image: busyboxImage, ImagePullPolicy: corev1.PullNever,
				Command: []string{"/bin/sleep", "3600"}}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// waitRunning waits for the pods to be Running; it returns each pod.
func (n *node) waitRunning(t *testing.T, timeout time.Duration, names ...string) map[string]*corev1.Pod {
	t.Helper()
	ctx := context.Background()
	got := map[string]*corev1.Pod{}
	waitFor(t, timeout, fmt.Sprintf("pods %v Running", names), func() bool {
		for _, name := range names {
			p, err := n.env.Clientset.CoreV1().Pods(podNS).Get(ctx, name, metav1.GetOptions{})
			if err != nil || p.Status.Phase != corev1.PodRunning {
				return false
			}
			got[name] = p
		}
		return true
	}, func() string { return n.diag(t, names...) })
	return got
}

// diag is what explains a pod that is not Running: its status, the
// events, and the logs' tails.
func (n *node) diag(t *testing.T, names ...string) string {
	ctx := context.Background()
	var b strings.Builder
	for _, name := range names {
		p, err := n.env.Clientset.CoreV1().Pods(podNS).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			fmt.Fprintf(&b, "pod %s: %v\n", name, err)
			continue
		}
		fmt.Fprintf(&b, "pod %s: phase %s", name, p.Status.Phase)
		for _, c := range p.Status.ContainerStatuses {
			if c.State.Waiting != nil {
				fmt.Fprintf(&b, ", %s waiting: %s %s", c.Name, c.State.Waiting.Reason, c.State.Waiting.Message)
			}
		}
		b.WriteString("\n")
	}
	if evs, err := n.env.Clientset.CoreV1().Events(podNS).List(ctx, metav1.ListOptions{}); err == nil {
		for _, e := range evs.Items {
			fmt.Fprintf(&b, "event %s %s/%s: %s %s (x%d)\n", e.Type, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message, e.Count)
		}
	}
	return b.String() + n.kubelet.tail(25) + "\n" + n.ctrd.tail(10) + "\n" + n.agent.tail(10)
}

// containerID is the pod's container c's containerd ID.
func containerID(t *testing.T, p *corev1.Pod) string {
	t.Helper()
	for _, c := range p.Status.ContainerStatuses {
		if id, ok := strings.CutPrefix(c.ContainerID, "containerd://"); ok {
			return id
		}
	}
	t.Fatalf("pod %s has no containerd container: %+v", p.Name, p.Status.ContainerStatuses)
	return ""
}

var execSeq atomic.Int64

// exec runs a command in the container through containerd (no kubectl
// exec: no kubelet streaming needed).
func (n *node) exec(id string, args ...string) (string, error) {
	return n.ctrRun(append([]string{"tasks", "exec", "--fifo-dir", filepath.Join(n.dir, "fifo"), "--exec-id", fmt.Sprintf("tc%d", execSeq.Add(1)), id}, args...)...)
}

// containerAddrs lists the container's IPv4 addresses by interface, as it
// sees them (`ip -o -4 addr`).
func (n *node) containerAddrs(t *testing.T, id string) map[string][]string {
	t.Helper()
	out, err := n.exec(id, "/bin/ip", "-o", "-4", "addr")
	if err != nil {
		t.Fatalf("ip addr in %s: %v\n%s", id, err, out)
	}
	m := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := inetRE.FindStringSubmatch(line); f != nil && f[1] != "lo" {
			name, _, _ := strings.Cut(f[1], "@")
			m[name] = append(m[name], f[2])
		}
	}
	return m
}

func networkStatus(t *testing.T, p *corev1.Pod) []api.NetworkStatus {
	t.Helper()
	var st []api.NetworkStatus
	if err := json.Unmarshal([]byte(p.Annotations[api.NetworkStatusAnnotation]), &st); err != nil {
		t.Fatalf("%s: network-status %q: %v", p.Name, p.Annotations[api.NetworkStatusAnnotation], err)
	}
	return st
}

func (n *node) ipam(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(binDir, "telcnictl"), "-socket", n.agentSock, "ipam").CombinedOutput()
	if err != nil {
		t.Fatalf("telcnictl ipam: %v\n%s", err, out)
	}
	return string(out)
}

func (n *node) reservations(t *testing.T) int {
	t.Helper()
	l, err := dynamic.NewForConfigOrDie(n.env.Config).Resource(resGVR).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return len(l.Items)
}

// deletePods deletes the pods and waits until the kubelet has torn them
// down and removed them (the CNI DEL has run by then).
func (n *node) deletePods(t *testing.T, names ...string) time.Duration {
	t.Helper()
	ctx := context.Background()
	t0 := time.Now()
	for _, name := range names {
		if err := n.env.Clientset.CoreV1().Pods(podNS).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 60*time.Second, fmt.Sprintf("pods %v gone", names), func() bool {
		for _, name := range names {
			if _, err := n.env.Clientset.CoreV1().Pods(podNS).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return false
			}
		}
		return true
	}, func() string { return n.diag(t, names...) })
	return time.Since(t0)
}

// TestKubeletPods: the real kubelet and containerd (CRI) call telcni.
// Two pods asking for fronthaul (a fixed address each) and userplane with
// the NPWG annotation become Running; network-status is written on them
// and matches what the containers see; they ping each other on both
// networks; deleting them frees every address and reservation. Then the
// agent is killed while the kubelet creates a pod: the sandbox fails, the
// kubelet retries, and the pod is Running once the agent is back, nothing
// leaked.
func TestKubeletPods(t *testing.T) {
	p := requireParts(t)
	start := time.Now()
	env := cluster(t)
	n := startNode(t, env, p, "kl-node")
	t.Logf("API server, containerd, agent and kubelet up in %s", time.Since(start).Round(10*time.Millisecond))

	fixed := map[string]string{"pod-a": "10.41.0.10", "pod-b": "10.41.0.11"}
	t0 := time.Now()
	for _, name := range []string{"pod-a", "pod-b"} {
		n.createPod(t, name, fmt.Sprintf(`[{"name":"fronthaul","interface":"fh0","ips":["%s/24"]},{"name":"userplane","interface":"up0"}]`, fixed[name]))
	}
	pods := n.waitRunning(t, 90*time.Second, "pod-a", "pod-b")
	t.Logf("2 pods Running %s after create", time.Since(t0).Round(10*time.Millisecond))

	ids := map[string]string{}
	seen := map[string]map[string][]string{}
	for _, name := range []string{"pod-a", "pod-b"} {
		pod := pods[name]
		ids[name] = containerID(t, pod)
		got := n.containerAddrs(t, ids[name])
		seen[name] = got
		st := networkStatus(t, pod)
		if len(st) != 3 || len(got) != 3 {
			t.Errorf("%s: network-status %+v, container interfaces %v: want eth0, fh0, up0", name, st, got)
		}
		for _, s := range st {
			if !slices.Equal(s.IPs, got[s.Interface]) {
				t.Errorf("%s: network-status %s %v, the container has %v", name, s.Interface, s.IPs, got[s.Interface])
			}
		}
		if want := []string{fixed[name]}; !slices.Equal(got["fh0"], want) {
			t.Errorf("%s: fh0 has %v, want the fixed %v", name, got["fh0"], want)
		}
		if eth0 := got["eth0"]; len(eth0) != 1 || pod.Status.PodIP != eth0[0] {
			t.Errorf("%s: status.podIP %q, eth0 has %v", name, pod.Status.PodIP, eth0)
		}
	}
	// Traffic between the pods on both networks (and eth0), both ways.
	for _, pair := range [][2]string{{"pod-a", "pod-b"}, {"pod-b", "pod-a"}} {
		for _, ifc := range []string{"fh0", "up0", "eth0"} {
			dst := seen[pair[1]][ifc]
			if len(dst) == 0 {
				continue
			}
			if out, err := n.exec(ids[pair[0]], "/bin/ping", "-c", "2", "-W", "2", "-I", ifc, dst[0]); err != nil {
				neighA, _ := n.exec(ids[pair[0]], "/bin/ip", "neigh")
				neighB, _ := n.exec(ids[pair[1]], "/bin/ip", "neigh")
				linkA, _ := n.exec(ids[pair[0]], "/bin/ip", "-o", "link")
				linkB, _ := n.exec(ids[pair[1]], "/bin/ip", "-o", "link")
				t.Errorf("%s ping %s (%s of %s): %v\n%s\n%s neighbours:\n%s\n%s\n%s neighbours:\n%s\n%s", pair[0], dst[0], ifc, pair[1], err, out,
					pair[0], neighA, linkA, pair[1], neighB, linkB)
			}
		}
	}
	if r := n.reservations(t); r != 2 {
		t.Errorf("%d IPReservations, want the two fixed addresses'", r)
	}
	if t.Failed() {
		t.FailNow()
	}

	d := n.deletePods(t, "pod-a", "pod-b")
	t.Logf("2 pods deleted and gone in %s", d.Round(10*time.Millisecond))
	checkFreed(t, n)
	t.Logf("first part took %s", time.Since(start).Round(10*time.Millisecond))

	// The agent is killed while the kubelet creates a pod: RunPodSandbox
	// fails (CNI code 11, the agent's socket unreachable), the kubelet
	// retries, and the pod is Running once the agent is back.
	n.agent.kill()
	t0 = time.Now()
	n.createPod(t, "pod-c", `[{"name":"fronthaul","interface":"fh0","ips":["10.41.0.12/24"]},{"name":"userplane","interface":"up0"}]`)
	waitFor(t, 60*time.Second, "a FailedCreatePodSandBox event for pod-c", func() bool {
		evs, err := env.Clientset.CoreV1().Events(podNS).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=pod-c"})
		if err != nil {
			return false
		}
		for _, e := range evs.Items {
			if e.Reason == "FailedCreatePodSandBox" {
				t.Logf("while the agent is down: %s", e.Message)
				return true
			}
		}
		return false
	}, func() string { return n.diag(t, "pod-c") })
	n.startAgent(t)
	t1 := time.Now()
	pods = n.waitRunning(t, 90*time.Second, "pod-c")
	t.Logf("pod-c Running %s after the agent restarted (%s after create)", time.Since(t1).Round(10*time.Millisecond), time.Since(t0).Round(10*time.Millisecond))
	got := n.containerAddrs(t, containerID(t, pods["pod-c"]))
	if !slices.Equal(got["fh0"], []string{"10.41.0.12"}) || len(got["up0"]) != 1 || len(got["eth0"]) != 1 {
		t.Errorf("pod-c's interfaces after the retry: %v", got)
	}
	if ipam := n.ipam(t); !strings.Contains(ipam, "(3 addresses held)") {
		t.Errorf("with pod-c only, the agent should hold 3 addresses (eth0, fh0, up0):\n%s", ipam)
	}
	n.deletePods(t, "pod-c")
	checkFreed(t, n)
}

// checkFreed: no address held, no record, no IPReservation, no sandbox
// left in containerd, only up0/up0p in the agent's host netns.
func checkFreed(t *testing.T, n *node) {
	t.Helper()
	var ipam string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if ipam = n.ipam(t); strings.Contains(ipam, "(0 addresses held)") {
			break
		}
	}
	if !strings.Contains(ipam, "(0 addresses held)") {
		t.Errorf("addresses held 20 s after the pods were deleted:\n%s", ipam)
	}
	out, err := exec.Command(filepath.Join(binDir, "telcnictl"), "-socket", n.agentSock, "pods").CombinedOutput()
	if err != nil || strings.Contains(strings.TrimSpace(string(out)), "\n") {
		t.Errorf("telcnictl pods after the pods were deleted (%v):\n%s", err, out)
	}
	if r := n.reservations(t); r != 0 {
		t.Errorf("%d IPReservations left after the pods were deleted", r)
	}
	// The kubelet removes dead sandboxes in its GC (a minute's wait):
	// stopped is what matters; their netns must be gone.
	if out, err := n.ctrRun("tasks", "ls"); err == nil && strings.Contains(out, "RUNNING") {
		t.Errorf("tasks still running in containerd after the pods were deleted:\n%s", out)
	}
	if left := n.newCNINetns(); len(left) > 0 {
		t.Errorf("sandbox netns left after the pods were deleted: %v", left)
	}
	links, err := netnstest.Handle(t, n.hostNS).LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var extra []string
	for _, l := range links {
		if name := l.Attrs().Name; name != "lo" && !strings.HasPrefix(name, "up") {
			extra = append(extra, name)
		}
	}
	if len(extra) > 0 {
		t.Errorf("links left in the agent's host netns: %v", extra)
	}
}
