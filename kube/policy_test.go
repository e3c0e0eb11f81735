package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/internal/kubetest"
	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/kernelpath"
	"github.com/telcni/telcni/policy"
)

// policyPod creates a pod with labels and its network-status on network
// ran/fh, as its node's agent would have written it.
func policyPod(t *testing.T, cs kubernetes.Interface, name, app, addr string) *corev1.Pod {
	t.Helper()
	st, _ := json.Marshal([]api.NetworkStatus{{Name: "ran/fh", Interface: "net1", IPs: []string{addr}}})
	p, err := cs.CoreV1().Pods("ran").Create(context.Background(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ran", Labels: map[string]string{"app": app},
			Annotations: map[string]string{api.NetworkStatusAnnotation: string(st)}},
		Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// createPolicy creates the MultiNetworkPolicy ns/name for the networks
// policyFor, spec as YAML under "spec:".
func createPolicy(t *testing.T, rc *rest.Config, ns, name, policyFor, spec string) {
	t.Helper()
	y := `
apiVersion: k8s.cni.cncf.io/v1beta1
kind: MultiNetworkPolicy
metadata:
  name: ` + name + `
  namespace: ` + ns + `
  annotations: {k8s.v1.cni.cncf.io/policy-for: "` + policyFor + `"}
spec:` + spec
	var obj map[string]any
	if err := yaml.Unmarshal([]byte(y), &obj); err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: obj}
	if _, err := dynamic.NewForConfigOrDie(rc).Resource(policy.GVR).Namespace(u.GetNamespace()).Create(context.Background(), u, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create MultiNetworkPolicy: %v", err)
	}
}

// TestPolicyControllerEnforcesOnRunningPods: a server pod and two clients
// on one macvlan network (real netns, real UDP), their pods in a real API
// server. Creating a MultiNetworkPolicy that admits only client a stops
// client b's traffic within 2 s; relabelling b as an "a" admits it;
// deleting the policy opens the server again within 2 s. No CNI call in
// between: only the API changes.
func TestPolicyControllerEnforcesOnRunningPods(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, macvlan and nftables")
	}
	rc, cs := apiserver(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The data plane: server 10.9.0.10, a .20, b .30.
	node, srvNS, aNS, bNS := netnstest.New(t), netnstest.New(t), netnstest.New(t), netnstest.New(t)
	netnstest.Uplink(t, node, "up0")
	kp, err := kernelpath.New(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), node)
	if err != nil {
		t.Fatal(err)
	}
	defer kp.Close()
	fh, err := api.ParseNAD("fh", "ran", `{"cniVersion":"1.1.0","type":"telcni","path":"macvlan","master":"up0","ipam":{"subnets":[{"cidr":"10.9.0.0/24"}]}}`)
	if err != nil {
		t.Fatal(err)
	}
	srvIP := netip.MustParseAddr("10.9.0.10")
	for ns, ip := range map[string]string{srvNS: "10.9.0.10/24", aNS: "10.9.0.20/24", bNS: "10.9.0.30/24"} {
		if _, err := kp.Attach(ctx, &attach.Request{ContainerID: ns, Netns: ns, IfName: "net1", Network: fh,
			IPs: []attach.IPConfig{{Address: netip.MustParsePrefix(ip)}}}); err != nil {
			t.Fatal(err)
		}
	}
	if c, err := nftables.New(nftables.WithNetNSFd(netnstest.Fd(t, srvNS))); err != nil {
		t.Skipf("no nftables: %v", err)
	} else if _, err := c.ListTables(); err != nil {
		t.Skipf("no nf_tables in this kernel: %v", err)
	}

	// The API side.
	namespace(t, cs, "ran")
	srv := policyPod(t, cs, "server", "server", "10.9.0.10")
	policyPod(t, cs, "client-a", "a", "10.9.0.20")
	policyPod(t, cs, "client-b", "b", "10.9.0.30")

	var mu sync.Mutex
	var applied []time.Time // when Apply isolated (true) or opened the server
	var isolated []bool
	srvTarget := PolicyTarget{Attachment: "srv/eth0", IfName: "net1", Pod: attach.Pod{Namespace: "ran", Name: "server", UID: string(srv.UID)}, Network: "ran/fh"}
	pc, err := NewPolicyController(rc, PolicyConfig{
		Targets: func(context.Context) ([]PolicyTarget, error) { return []PolicyTarget{srvTarget}, nil },
		Apply: func(_ context.Context, tg PolicyTarget, r policy.Rules) error {
			target, _, done, err := kernelpath.PodNetns(srvNS)
			if err != nil {
				return err
			}
			defer done()
			if err := kernelpath.ApplyNetworkPolicy(target, tg.IfName, r); err != nil {
				return err
			}
			mu.Lock()
			applied, isolated = append(applied, time.Now()), append(isolated, r.Ingress.Isolated)
			mu.Unlock()
			return nil
		},
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- pc.Run(ctx) }() // owned: ends with ctx, awaited below
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	probe := func(from string, wait time.Duration) bool {
		c, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		_, err := netnstest.UDPEchoPort(c, from, srvNS, netip.AddrPortFrom(srvIP, 7000))
		return err == nil
	}
	// until probes every 100 ms until from's traffic passes (want true) or
	// not, and returns how long that took after start; 0 when it never did
	// within bound.
	until := func(from string, want bool, start time.Time, bound time.Duration) time.Duration {
		for time.Since(start) < bound {
			if probe(from, 150*time.Millisecond) == want {
				return time.Since(start)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return 0
	}
	if !probe(aNS, 5*time.Second) || !probe(bNS, 2*time.Second) {
		t.Fatal("no policy, yet traffic does not pass: the lab is broken")
	}
	lastApply := func(after time.Time) (time.Duration, bool) {
		mu.Lock()
		defer mu.Unlock()
		for i := len(applied) - 1; i >= 0; i-- {
			if applied[i].After(after) {
				return applied[i].Sub(after), isolated[i]
			}
		}
		return 0, false
	}

	// A fresh CRD's watch lags its first events by up to seconds (the API
	// server's watch cache waits for a resource version it has not seen):
	// warm it with a policy elsewhere, then measure.
	warm := time.Now()
	createPolicy(t, rc, "default", "warm-up", "nothing", ` {podSelector: {}}`)
	for len(pc.policies.GetStore().List()) == 0 {
		if time.Since(warm) > 10*time.Second {
			t.Fatal("the controller never saw the warm-up policy")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("first policy event reached the controller %v after its creation", time.Since(warm))

	// 1. The policy: only app=a on UDP 7000.
	start := time.Now()
	createPolicy(t, rc, "ran", "only-a", "fh", `
  podSelector: {matchLabels: {app: server}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: a}}}]
    ports: [{protocol: UDP, port: 7000}]`)
	dropped := until(bNS, false, start, 2*time.Second)
	if dropped == 0 {
		t.Fatal("client b still reaches the server 2 s after the policy was created")
	}
	took, iso := lastApply(start)
	t.Logf("policy created: applied %v after the API call (isolated %v), b's traffic dropped after %v", took, iso, dropped)
	if !probe(aNS, 2*time.Second) {
		t.Error("client a is allowed by the policy, yet dropped")
	}

	// 2. A label change admits b: pods are watched, not only policies.
	start = time.Now()
	patch := []byte(`{"metadata":{"labels":{"app":"a"}}}`)
	if _, err := cs.CoreV1().Pods("ran").Patch(ctx, "client-b", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if d := until(bNS, true, start, 2*time.Second); d == 0 {
		t.Error("client b relabelled app=a is still dropped after 2 s")
	} else {
		t.Logf("b relabelled: passes after %v", d)
	}
	// 2b. A pod that finished is no peer any more, whatever its labels:
	// its address may already be another pod's.
	b, err := cs.CoreV1().Pods("ran").Get(ctx, "client-b", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b.Status.Phase = corev1.PodSucceeded
	start = time.Now()
	if _, err := cs.CoreV1().Pods("ran").UpdateStatus(ctx, b, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if d := until(bNS, false, start, 2*time.Second); d == 0 {
		t.Fatal("client b's pod Succeeded, yet its address still passes as an app=a peer 2 s later")
	} else {
		t.Logf("b's pod finished: its address dropped after %v", d)
	}

	// 3. Deleting the policy opens the server again.
	start = time.Now()
	if err := dynamic.NewForConfigOrDie(rc).Resource(policy.GVR).Namespace("ran").Delete(ctx, "only-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	passes := until(bNS, true, start, 2*time.Second)
	if passes == 0 {
		t.Fatal("client b still dropped 2 s after the policy was deleted")
	}
	took, iso = lastApply(start)
	t.Logf("policy deleted: applied %v after the API call (isolated %v), b's traffic passes after %v", took, iso, passes)
}

// TestPolicyRulesForAtAdd: the rules an ADD applies before it answers. At
// the agent's start RulesFor waits for the caches instead of answering
// "unknown" (the pod would run open until the first pass); a pod created a
// moment before its ADD, not yet in the watch cache, is read from the API;
// without the CRD no policy can exist, and the answer is open at once.
func TestPolicyRulesForAtAdd(t *testing.T) {
	rc, cs := ranPolicy(t, "guard", `
  podSelector: {matchLabels: {app: server}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: a}}}]`)
	ctx := context.Background()
	srv := policyPod(t, cs, "server", "server", "10.9.0.10")
	run := func(rc *rest.Config) *PolicyController {
		pc, err := NewPolicyController(rc, rulesOnly())
		if err != nil {
			t.Fatal(err)
		}
		runPolicyController(t, pc)
		return pc
	}

	// 1. Asked as the controller starts: it waits for the caches.
	pc := run(rc)
	start := time.Now()
	r, ok := pc.RulesFor(ctx, target(srv))
	if !ok || !r.Ingress.Isolated {
		t.Fatalf("at start: rules %+v ok %v, want the policy's (ingress isolated)", r, ok)
	}
	t.Logf("at start: the policy known %v after the first ask", time.Since(start))

	// 2. A pod created right before its ADD.
	for i := range 5 {
		p := policyPod(t, cs, fmt.Sprintf("server-%d", i), "server", fmt.Sprintf("10.9.0.%d", 20+i))
		if r, ok := pc.RulesFor(ctx, target(p)); !ok || !r.Ingress.Isolated {
			t.Fatalf("a pod created just before its ADD: rules %+v ok %v, want ingress isolated", r, ok)
		}
	}
	other := policyPod(t, cs, "client", "a", "10.9.0.30")
	if r, ok := pc.RulesFor(ctx, target(other)); !ok || !r.Open() {
		t.Fatalf("a pod no policy selects: rules %+v ok %v, want open", r, ok)
	}
	if _, ok := pc.RulesFor(ctx, PolicyTarget{Pod: attach.Pod{Namespace: "ran", Name: "gone"}, Network: "ran/fh"}); ok {
		t.Fatal("a pod the API does not have: ok, want not known")
	}

	// 3. No CRD: open at once.
	bare := kubetest.Start(t)
	start = time.Now()
	if r, ok := run(bare.Config).RulesFor(ctx, target(srv)); !ok || !r.Open() {
		t.Fatalf("no MultiNetworkPolicy CRD: rules %+v ok %v, want open", r, ok)
	}
	if took := time.Since(start); took >= readyWait {
		t.Fatalf("no CRD: the answer took %v, the whole wait", took)
	}
}

// TestPolicyNamedPortFromPodSpec: an ingress rule's named port is the
// protected pod's container port of that name and protocol, read by the
// Cluster from the pod's spec (Cluster.PodPorts).
func TestPolicyNamedPortFromPodSpec(t *testing.T) {
	rc, cs := ranPolicy(t, "named", `
  podSelector: {matchLabels: {app: amf}}
  ingress:
  - ports: [{protocol: SCTP, port: n2}, {protocol: UDP, port: n2}, {port: sbi}]`)
	ctx := context.Background()
	p, err := cs.CoreV1().Pods("ran").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "amf", Namespace: "ran", Labels: map[string]string{"app": "amf"}},
		Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "amf", Image: "busybox", Ports: []corev1.ContainerPort{
			{Name: "n2", ContainerPort: 38412, Protocol: corev1.ProtocolSCTP},
			{Name: "sbi", ContainerPort: 8080},
		}}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := cluster(t, rc, "node-a").PolicyController(rulesOnly())
	if err != nil {
		t.Fatal(err)
	}
	runPolicyController(t, pc)
	r, ok := pc.RulesFor(ctx, target(p))
	if !ok || !r.Ingress.Isolated {
		t.Fatalf("rules %+v ok %v, want ingress isolated", r, ok)
	}
	var got []string
	for _, a := range r.Ingress.Allow {
		got = append(got, fmt.Sprintf("%s/%d-%d", a.Protocol, a.Port, a.EndPort))
	}
	// n2 is SCTP 38412; the pod has no UDP port named n2 (allows nothing);
	// sbi defaults to TCP.
	if want := []string{"sctp/38412-38412", "tcp/8080-8080"}; !slices.Equal(got, want) {
		t.Fatalf("ingress allows %v, want %v", got, want)
	}
}

// ranPolicy starts an API server with namespace "ran" and one
// MultiNetworkPolicy there for network fh, spec as YAML under "spec:".
func ranPolicy(t *testing.T, name, spec string) (*rest.Config, kubernetes.Interface) {
	t.Helper()
	rc, cs := apiserver(t)
	namespace(t, cs, "ran")
	createPolicy(t, rc, "ran", name, "fh", spec)
	return rc, cs
}

// rulesOnly configures a controller that is only asked (RulesFor).
func rulesOnly() PolicyConfig {
	return PolicyConfig{
		Targets: func(context.Context) ([]PolicyTarget, error) { return nil, nil },
		Apply:   func(context.Context, PolicyTarget, policy.Rules) error { return nil },
		Log:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
}

// runPolicyController runs pc until the test ends.
func runPolicyController(t *testing.T, pc *PolicyController) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = pc.Run(ctx) }() // owned: ends at the test's cleanup
	t.Cleanup(func() { cancel(); <-done })
}

// target is p's interface net1 on network ran/fh.
func target(p *corev1.Pod) PolicyTarget {
	return PolicyTarget{Attachment: p.Name + "/eth0", IfName: "net1", Pod: attach.Pod{Namespace: p.Namespace, Name: p.Name, UID: string(p.UID)}, Network: "ran/fh"}
}

// TestPolicyRulesForAPIDown: with the API server unreachable, the first ADD
// waits for the caches (bounded), and the ones after it do not wait again:
// an outage must not add the wait to every pod's start.
func TestPolicyRulesForAPIDown(t *testing.T) {
	pc, err := NewPolicyController(&rest.Config{Host: "https://127.0.0.1:1"}, rulesOnly())
	if err != nil {
		t.Fatal(err)
	}
	pc.readyWait = 300 * time.Millisecond
	runPolicyController(t, pc)
	tg := PolicyTarget{Pod: attach.Pod{Namespace: "ran", Name: "p"}, Network: "ran/fh"}
	start := time.Now()
	if _, ok := pc.RulesFor(context.Background(), tg); ok {
		t.Fatal("API server down: the rules are known")
	}
	if took := time.Since(start); took < pc.readyWait {
		t.Fatalf("the first ADD waited %v, want the bounded wait %v", took, pc.readyWait)
	}
	start = time.Now()
	for range 3 {
		if _, ok := pc.RulesFor(context.Background(), tg); ok {
			t.Fatal("API server down: the rules are known")
		}
	}
	if took := time.Since(start); took > pc.readyWait/2 {
		t.Fatalf("three ADDs after the wait ran out took %v: they waited again", took)
	}
}
