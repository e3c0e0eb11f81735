package e2e

import (
	"context"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	nadclient "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/internal/kubetest"
	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/policy"
)

const onlyA = `
apiVersion: k8s.cni.cncf.io/v1beta1
kind: MultiNetworkPolicy
metadata:
  name: only-a
  namespace: ran
  annotations: {k8s.v1.cni.cncf.io/policy-for: fronthaul}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: a}}}]
    ports: [{protocol: UDP, port: 7000}]`

// TestKubeMultiNetworkPolicy: pods made by the real plugin and agents on
// two nodes (server and client a on node-a, client b on node-b). A
// MultiNetworkPolicy admitting only app=a on the server's fronthaul stops
// b within 2 s while a passes, with no CNI call: node-a's agent resolves
// b's address from the network-status node-b's agent wrote. Deleting it
// opens the server again within 2 s. A pod the policy selects is isolated
// when its ADD returns. A policy created while node-a's agent is down is
// enforced once it is back (its first pass re-applies).
func TestKubeMultiNetworkPolicy(t *testing.T) {
	env := kubetest.Start(t)
	env.InstallCRDs(t)
	cs := env.Clientset
	ctx := context.Background()
	env.CreateNamespaces(t, "ran", "telcni-system")
	if _, err := nadclient.NewForConfigOrDie(env.Config).K8sCniCncfIoV1().NetworkAttachmentDefinitions("ran").Create(ctx, &nadv1.NetworkAttachmentDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "fronthaul", Namespace: "ran"},
		Spec:       nadv1.NetworkAttachmentDefinitionSpec{Config: `{"cniVersion":"1.1.0","type":"telcni","path":"macvlan","master":"up0","ipam":{"subnets":[{"cidr":"10.40.0.0/24"}]}}`},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sw := lan(t)
	nodeA := startKubeNode(t, env, sw, "node-a")
	nodeB := startKubeNode(t, env, sw, "node-b")
	pods := map[string]*kubePod{}
	for name, n := range map[string]*kubeNode{"server": nodeA, "client-a": nodeA, "client-b": nodeB} {
		p := newKubePod(t, cs, n, name, `[{"name":"fronthaul","interface":"fh0"}]`)
		app := map[string]string{"server": "server", "client-a": "a", "client-b": "b"}[name]
		if _, err := cs.CoreV1().Pods("ran").Patch(ctx, name, types.MergePatchType, []byte(`{"metadata":{"labels":{"app":"`+app+`"}}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, e := plugin(t, "ADD", "ctr-"+name, p.netns, "eth0", p.args(), p.conf()); e != nil {
			t.Fatalf("ADD %s: %v\n%s", name, e, n.log())
		}
		pods[name] = p
	}
	obj, err := cs.CoreV1().Pods("ran").Get(ctx, "server", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var st []api.NetworkStatus
	if err := json.Unmarshal([]byte(obj.Annotations[api.NetworkStatusAnnotation]), &st); err != nil || len(st) != 1 || len(st[0].IPs) != 1 {
		t.Fatalf("server's network-status %q: %v", obj.Annotations[api.NetworkStatusAnnotation], err)
	}
	srvIP := netip.MustParseAddr(st[0].IPs[0])

	probe := func(from string, wait time.Duration) bool {
		c, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		_, err := netnstest.UDPEchoPort(c, pods[from].netns, pods["server"].netns, netip.AddrPortFrom(srvIP, 7000))
		return err == nil
	}
	until := func(from string, want bool, start time.Time, bound time.Duration) time.Duration {
		for time.Since(start) < bound {
			if probe(from, 150*time.Millisecond) == want {
				return time.Since(start)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return 0
	}
	if !probe("client-a", 5*time.Second) || !probe("client-b", 5*time.Second) {
		t.Fatal("no policy, yet the clients do not reach the server")
	}
	mnps := dynamic.NewForConfigOrDie(env.Config).Resource(policy.GVR).Namespace("ran")
	create := func() {
		t.Helper()
		var o map[string]any
		if err := yaml.Unmarshal([]byte(onlyA), &o); err != nil {
			t.Fatal(err)
		}
		if _, err := mnps.Create(ctx, &unstructured.Unstructured{Object: o}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// A fresh CRD's first watch event can lag by seconds (the API server's
	// watch cache catching up): warm it up before measuring the bound.
	warm := time.Now()
	var o map[string]any
	_ = yaml.Unmarshal([]byte(`{apiVersion: k8s.cni.cncf.io/v1beta1, kind: MultiNetworkPolicy, metadata: {name: warm-up, namespace: ran, annotations: {k8s.v1.cni.cncf.io/policy-for: nothing}}, spec: {podSelector: {}}}`), &o)
	if _, err := mnps.Create(ctx, &unstructured.Unstructured{Object: o}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	t.Logf("warm-up policy created %v ago", time.Since(warm).Round(time.Millisecond))

	start := time.Now()
	create()
	if d := until("client-b", false, start, 2*time.Second); d == 0 {
		t.Fatalf("client b still reaches the server 2 s after the policy was created\nagent node-a:\n%s", nodeA.log())
	} else {
		t.Logf("policy created: b dropped after %v", d)
	}
	if !probe("client-a", 2*time.Second) {
		t.Error("client a is allowed, yet dropped")
	}

	// A pod the policy selects, made now: isolated when its ADD returns,
	// not at the controller's next pass. (Created with its labels, as a
	// controller creates pods; the sandbox comes well after in a cluster.)
	st2, err := cs.CoreV1().Pods("ran").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "server-2", Namespace: "ran", Labels: map[string]string{"app": "server"},
			Annotations: map[string]string{api.NetworksAnnotation: `[{"name":"fronthaul","interface":"fh0"}]`}},
		Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv2 := &kubePod{name: "server-2", netns: netnstest.New(t), uid: string(st2.UID), node: nodeA}
	time.Sleep(500 * time.Millisecond)
	out, e := plugin(t, "ADD", "ctr-server-2", srv2.netns, "eth0", srv2.args(), srv2.conf())
	if e != nil {
		t.Fatalf("ADD server-2: %v", e)
	}
	var res struct {
		IPs []struct{ Address string } `json:"ips"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.IPs) != 1 {
		t.Fatalf("ADD server-2 result %s: %v", out, err)
	}
	srv2IP := netip.MustParsePrefix(res.IPs[0].Address).Addr()
	to2 := func(from string, wait time.Duration) bool {
		c, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		_, err := netnstest.UDPEchoPort(c, pods[from].netns, srv2.netns, netip.AddrPortFrom(srv2IP, 7000))
		return err == nil
	}
	if to2("client-b", 300*time.Millisecond) {
		t.Error("server-2 was open to b right after its ADD: the policy came later")
	}
	if !to2("client-a", 2*time.Second) {
		t.Error("server-2 drops a, which the policy admits")
	}

	start = time.Now()
	if err := mnps.Delete(ctx, "only-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if d := until("client-b", true, start, 2*time.Second); d == 0 {
		t.Fatalf("client b still dropped 2 s after the policy was deleted\nagent node-a:\n%s", nodeA.log())
	} else {
		t.Logf("policy deleted: b passes after %v", d)
	}

	// Agent restart: the policy arrives while node-a's agent is down.
	nodeA.stop()
	create()
	if !probe("client-b", 2*time.Second) {
		t.Fatal("b dropped while node-a's agent is down: nothing should have changed")
	}
	start = time.Now()
	nodeA.start(t, env)
	if d := until("client-b", false, start, 10*time.Second); d == 0 {
		t.Fatalf("the restarted agent does not enforce the policy created while it was down\n%s", nodeA.log())
	} else {
		t.Logf("agent restarted: b dropped %v after the start", d)
	}
	if !probe("client-a", 2*time.Second) {
		t.Error("client a dropped after the agent's restart")
	}
}
