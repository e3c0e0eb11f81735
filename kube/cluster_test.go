package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	nadclient "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/internal/agenttest"
	"github.com/telcni/telcni/internal/kubetest"
	"github.com/telcni/telcni/ipam"
)

// apiserver starts a real kube-apiserver with the telcni CRDs installed.
func apiserver(t *testing.T) (*rest.Config, kubernetes.Interface) {
	t.Helper()
	env := kubetest.Start(t)
	env.InstallCRDs(t)
	return env.Config, env.Clientset
}

// ok fails t when the call passed to the returned func failed.
func ok(t *testing.T) func(any, error) {
	return func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}

func namespace(t *testing.T, cs kubernetes.Interface, names ...string) {
	t.Helper()
	for _, n := range names {
		ok(t)(cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}))
	}
}

func node(t *testing.T, cs kubernetes.Interface, name string) {
	t.Helper()
	ok(t)(cs.CoreV1().Nodes().Create(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}))
}

func nad(t *testing.T, rc *rest.Config, ns, name, config string) {
	t.Helper()
	nc := nadclient.NewForConfigOrDie(rc)
	ok(t)(nc.K8sCniCncfIoV1().NetworkAttachmentDefinitions(ns).Create(context.Background(), &nadv1.NetworkAttachmentDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: nadv1.NetworkAttachmentDefinitionSpec{Config: config}}, metav1.CreateOptions{}))
}

func pod(t *testing.T, cs kubernetes.Interface, ns, name, nodeName string, annotations map[string]string) *corev1.Pod {
	t.Helper()
	p, err := cs.CoreV1().Pods(ns).Create(context.Background(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: annotations},
		Spec:       corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// cluster connects an agent-side Cluster for nodeName and starts it.
func cluster(t *testing.T, rc *rest.Config, nodeName string, global ...string) *Cluster {
	t.Helper()
	c, err := New(rc, Config{NodeName: nodeName, GlobalNamespaces: global, GCInterval: 200 * time.Millisecond, Log: agenttest.Log()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

const fronthaul = `{"cniVersion":"1.1.0","type":"telcni","path":"macvlan","master":"up0","ipam":{"subnets":[{"cidr":"10.20.0.0/24","gateway":"10.20.0.1","rangeStart":"10.20.0.100"}]}}`

func TestNetworksFromNADs(t *testing.T) {
	rc, cs := apiserver(t)
	namespace(t, cs, "ran", "shared", "other")
	nad(t, rc, "ran", "fronthaul", fronthaul)
	nad(t, rc, "ran", "vfnet", `{"cniVersion":"1.0.0","type":"sriov","vlan":10}`)
	nad(t, rc, "ran", "broken", `{"type":"telcni","path":"macvlan"}`)
	nad(t, rc, "shared", "oam", `{"type":"telcni","path":"macvlan","master":"up1"}`)
	nad(t, rc, "other", "private", `{"type":"telcni","path":"macvlan","master":"up2"}`)
	c := cluster(t, rc, "node-a", "shared")
	src := c.Networks()
	ctx := context.Background()
	deadline := time.Now().Add(5 * time.Second)
	var n *api.Network
	var err error
	for n, err = src.Network(ctx, "ran", "fronthaul"); err != nil && time.Now().Before(deadline); n, err = src.Network(ctx, "ran", "fronthaul") {
		time.Sleep(50 * time.Millisecond) // the informer sees the NAD
	}
	if err != nil || n.Key() != "ran/fronthaul" || n.Master != "up0" {
		t.Fatalf("ran/fronthaul: %+v %v", n, err)
	}
	if n, err := src.Network(ctx, "ran", "oam"); err != nil || n.Key() != "shared/oam" {
		t.Errorf("oam from the global namespace: %+v %v", n, err)
	}
	if _, err := src.Network(ctx, "ran", "vfnet"); !errors.Is(err, api.ErrInvalidNetwork) || !strings.Contains(err.Error(), `ran/vfnet is not a telcni network (its spec.config has type "sriov")`) {
		t.Errorf("a NAD of another plugin: %v", err)
	}
	if _, err := src.Network(ctx, "ran", "broken"); err == nil || !strings.Contains(err.Error(), "master") {
		t.Errorf("an invalid telcni NAD: %v, want the field named", err)
	}
	if _, err := src.Network(ctx, "ran", "private"); !errors.Is(err, api.ErrNetworkNotFound) {
		t.Errorf("a NAD of another namespace: %v, want not found", err)
	}
	sc := src.(api.NamespaceScoper)
	if sc.Visible("ran", "other") || !sc.Visible("ran", "shared") || !sc.Visible("ran", "ran") {
		t.Error("visibility: want own and global namespaces only")
	}
	all, err := src.Networks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, n := range all {
		keys = append(keys, n.Key())
	}
	if strings.Join(keys, ",") != "other/private,ran/fronthaul,shared/oam" && len(keys) != 3 {
		t.Errorf("Networks: %v, want the three valid telcni NADs", keys)
	}
}

func TestPodAnnotationsAndNetworkStatus(t *testing.T) {
	rc, cs := apiserver(t)
	namespace(t, cs, "ran")
	c := cluster(t, rc, "node-a")
	ctx := context.Background()
	p := pod(t, cs, "ran", "du-1", "node-a", map[string]string{api.NetworksAnnotation: "fronthaul@fh0", "other.io/keep": "yes"})
	ref := attach.Pod{Namespace: "ran", Name: "du-1", UID: string(p.UID)}
	ann, err := c.PodAnnotations(ctx, ref)
	if err != nil || ann[api.NetworksAnnotation] != "fronthaul@fh0" {
		t.Fatalf("annotations %v %v", ann, err)
	}
	if _, err := c.PodAnnotations(ctx, attach.Pod{Namespace: "ran", Name: "du-1", UID: "not-this-pod"}); err == nil || !strings.Contains(err.Error(), "replaced") {
		t.Errorf("a stale UID: %v, want the pod named as replaced", err)
	}
	if _, err := c.PodAnnotations(ctx, attach.Pod{Namespace: "ran", Name: "nope"}); err == nil || !strings.Contains(err.Error(), "ran/nope") {
		t.Errorf("a missing pod: %v", err)
	}
	st := []api.NetworkStatus{{Name: "ran/fronthaul", Interface: "fh0", IPs: []string{"10.20.0.5"}, MAC: "02:00:00:00:00:01"}}
	if err := c.WriteNetworkStatus(ctx, ref, st); err != nil {
		t.Fatal(err)
	}
	got, err := cs.CoreV1().Pods("ran").Get(ctx, "du-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var back []api.NetworkStatus
	if err := json.Unmarshal([]byte(got.Annotations[api.NetworkStatusAnnotation]), &back); err != nil || len(back) != 1 || back[0].IPs[0] != "10.20.0.5" {
		t.Errorf("network-status %q: %v", got.Annotations[api.NetworkStatusAnnotation], err)
	}
	if got.Annotations["other.io/keep"] != "yes" || got.Annotations[api.NetworksAnnotation] != "fronthaul@fh0" {
		t.Errorf("other writers' annotations lost: %v", got.Annotations)
	}
	// The UID precondition: a status for a replaced pod does not land.
	if err := c.WriteNetworkStatus(ctx, attach.Pod{Namespace: "ran", Name: "du-1", UID: "not-this-pod"}, st); err == nil {
		t.Error("network-status written onto a replaced pod")
	}
}

func holder(cid, pod string) (ipam.Holder, attach.Pod) {
	return ipam.Holder{ContainerID: cid, IfName: "net1", PodNamespace: "ran", PodName: pod}, attach.Pod{Namespace: "ran", Name: pod}
}

// Two nodes share one network: blocks never overlap, a fixed address is
// held once cluster-wide, a fixed address inside another node's block is
// refused naming the node, a block claimed later skips addresses reserved
// before, and the controller frees what a deleted node held.
func TestClusterIPAMTwoNodes(t *testing.T) {
	rc, cs := apiserver(t)
	namespace(t, cs, "ran", "telcni-system")
	node(t, cs, "node-a")
	node(t, cs, "node-b")
	a, b := cluster(t, rc, "node-a"), cluster(t, rc, "node-b")
	n, err := api.ParseNAD("fronthaul", "ran", fronthaul)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	subnet := netip.MustParsePrefix("10.20.0.0/24")
	pod(t, cs, "ran", "du-1", "node-a", nil)
	pod(t, cs, "ran", "du-2", "node-b", nil)

	// Fixed addresses outside the dynamic range (.100-.254).
	h1, p1 := holder("c1", "du-1")
	if err := a.ReserveStatic(ctx, n, netip.MustParseAddr("10.20.0.5"), h1, p1); err != nil {
		t.Fatal(err)
	}
	if err := a.ReserveStatic(ctx, n, netip.MustParseAddr("10.20.0.5"), h1, p1); err != nil {
		t.Fatalf("a retried ADD reserving again: %v", err)
	}
	h2, p2 := holder("c2", "du-2")
	err = b.ReserveStatic(ctx, n, netip.MustParseAddr("10.20.0.5"), h2, p2)
	if !errors.Is(err, ipam.ErrAddressInUse) || !strings.Contains(err.Error(), "ran/du-1 (container c1, interface net1) on node node-a") {
		t.Fatalf("the same fixed address on node-b: %v, want it refused naming du-1 on node-a", err)
	}
	// A fixed address in a block no node holds yet, reserved by node-b.
	if err := b.ReserveStatic(ctx, n, netip.MustParseAddr("10.20.0.130"), h2, p2); err != nil {
		t.Fatal(err)
	}
	// Blocks: /28 for a /24. node-a claims the first two.
	blkA1, foreign, err := a.ClaimBlock(ctx, n, subnet)
	if err != nil || blkA1.Prefix != netip.MustParsePrefix("10.20.0.96/28") || len(foreign) != 0 {
		t.Fatalf("first block: %+v %v %v", blkA1, foreign, err)
	}
	blkA2, _, err := a.ClaimBlock(ctx, n, subnet)
	if err != nil || blkA2.Prefix != netip.MustParsePrefix("10.20.0.112/28") {
		t.Fatalf("second block: %+v %v", blkA2, err)
	}
	blkB, foreign, err := b.ClaimBlock(ctx, n, subnet)
	if err != nil || blkB.Prefix != netip.MustParsePrefix("10.20.0.128/28") {
		t.Fatalf("node-b's block: %+v %v", blkB, err)
	}
	if len(foreign) != 0 {
		t.Errorf("node-b's own reservation counted as foreign: %v", foreign)
	}
	blkA3, _, err := a.ClaimBlock(ctx, n, subnet)
	if err != nil || blkA3.Prefix != netip.MustParsePrefix("10.20.0.144/28") {
		t.Fatalf("third block of node-a: %+v %v", blkA3, err)
	}
	// node-a's fixed address in node-b's block: refused, nothing left.
	err = a.ReserveStatic(ctx, n, netip.MustParseAddr("10.20.0.140"), h1, p1)
	if !errors.Is(err, ipam.ErrAddressInUse) || !strings.Contains(err.Error(), "node node-b hands out dynamic addresses") {
		t.Fatalf("a fixed address inside node-b's block: %v", err)
	}
	if _, err := b.dyn.Resource(reservationsGVR).Get(ctx, ReservationName(n.Key(), netip.MustParseAddr("10.20.0.140")), metav1.GetOptions{}); err == nil {
		t.Error("the refused reservation was left behind")
	}
	// node-b reserved .200 before node-a claims the block holding it.
	if err := b.ReserveStatic(ctx, n, netip.MustParseAddr("10.20.0.200"), h2, p2); err != nil {
		t.Fatal(err)
	}
	var blk ipam.Block
	for blk.Prefix != netip.MustParsePrefix("10.20.0.192/28") {
		if blk, foreign, err = a.ClaimBlock(ctx, n, subnet); err != nil {
			t.Fatal(err)
		}
	}
	if who := foreign[netip.MustParseAddr("10.20.0.200")]; !strings.Contains(who, "ran/du-2") {
		t.Errorf("the block holding node-b's fixed .200: foreign %v", foreign)
	}
	// Release is holder-checked: another holder cannot free it.
	if err := a.ReleaseStatic(ctx, n, netip.MustParseAddr("10.20.0.5"), h2); err != nil {
		t.Fatal(err)
	}
	if err := b.ReserveStatic(ctx, n, netip.MustParseAddr("10.20.0.5"), h2, p2); !errors.Is(err, ipam.ErrAddressInUse) {
		t.Fatalf("freed by the wrong holder: %v", err)
	}
	if err := a.ReleaseStatic(ctx, n, netip.MustParseAddr("10.20.0.5"), h1); err != nil {
		t.Fatal(err)
	}
	if err := b.ReserveStatic(ctx, n, netip.MustParseAddr("10.20.0.5"), h2, p2); err != nil {
		t.Fatalf("after du-1 freed .5: %v", err)
	}

	// node-b's Node goes: the controller frees its blocks and reservations.
	if err := cs.CoreV1().Nodes().Delete(ctx, "node-b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := a.GC(ctx); err != nil {
		t.Fatal(err)
	}
	blocks, _ := a.listBlocks(ctx, metav1.ListOptions{})
	res, _ := a.listReservations(ctx, metav1.ListOptions{})
	for _, x := range blocks {
		if x.node == "node-b" {
			t.Errorf("block %s of the deleted node left", x.prefix)
		}
	}
	for _, r := range res {
		if r.node == "node-b" {
			t.Errorf("reservation of %s of the deleted node left", r.addr)
		}
	}
	if len(blocks) != 6 { // .96 .112 .144 .160 .176 .192
		t.Errorf("%d blocks after GC, want node-a's 6", len(blocks))
	}
}

// The controller frees a reservation whose pod is gone, or replaced by a
// pod of the same name, and keeps the others.
func TestGCFreesReservationsOfGonePods(t *testing.T) {
	rc, cs := apiserver(t)
	namespace(t, cs, "ran")
	node(t, cs, "node-a")
	a := cluster(t, rc, "node-a")
	n, _ := api.ParseNAD("fronthaul", "ran", fronthaul)
	ctx := context.Background()
	live := pod(t, cs, "ran", "live", "node-a", nil)
	gone := pod(t, cs, "ran", "gone", "node-a", nil)
	old := pod(t, cs, "ran", "sts-0", "node-a", nil)
	for i, p := range []*corev1.Pod{live, gone, old} {
		h := ipam.Holder{ContainerID: fmt.Sprintf("c%d", i), IfName: "net1", PodNamespace: "ran", PodName: p.Name}
		if err := a.ReserveStatic(ctx, n, netip.MustParseAddr(fmt.Sprintf("10.20.0.%d", 10+i)), h, attach.Pod{Namespace: "ran", Name: p.Name, UID: string(p.UID)}); err != nil {
			t.Fatal(err)
		}
	}
	zero := int64(0)
	for _, name := range []string{"gone", "sts-0"} {
		if err := cs.CoreV1().Pods("ran").Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
			t.Fatal(err)
		}
	}
	pod(t, cs, "ran", "sts-0", "node-a", nil) // a StatefulSet's replacement: same name, new UID
	if err := a.GC(ctx); err != nil {
		t.Fatal(err)
	}
	res, _ := a.listReservations(ctx, metav1.ListOptions{})
	if len(res) != 1 || res[0].podName != "live" {
		t.Errorf("reservations after GC: %+v, want only the live pod's", res)
	}
}
