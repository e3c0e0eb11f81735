// Package kubernetes_test proves the manifests in deploy/kubernetes against
// a real kube-apiserver: they apply, the CRDs' CEL rules hold, and the
// agent's service account has what it needs and nothing more.
package kubernetes_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/telcni/telcni/internal/kubetest"
)

func kubectl(t *testing.T, bin string, env *kubetest.Env, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, append([]string{"--kubeconfig", env.Kubeconfig}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

var (
	blocks = schema.GroupVersionResource{Group: "telcni.io", Version: "v1alpha1", Resource: "ipblocks"}
	res    = schema.GroupVersionResource{Group: "telcni.io", Version: "v1alpha1", Resource: "ipreservations"}
)

func obj(kind, name string, spec map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "telcni.io/v1alpha1", "kind": kind,
		"metadata": map[string]any{"name": name}, "spec": spec}}
}

func TestManifests(t *testing.T) {
	env := kubetest.Start(t)
	bin := kubetest.Kubectl(t)
	ctx := context.Background()
	// Server-side dry runs of both overlays (the namespace must exist for
	// the namespaced objects of a dry run).
	kubectl(t, bin, env, "apply", "-k", "nad-crd")
	kubectl(t, bin, env, "create", "namespace", "telcni-system")
	for _, o := range []string{"overlays/kernel-only", "overlays/vpp"} {
		out := kubectl(t, bin, env, "apply", "--dry-run=server", "-k", o)
		if !strings.Contains(out, "daemonset.apps/telcni-agent created (server dry run)") {
			t.Errorf("dry run of %s:\n%s", o, out)
		}
	}
	out := kubectl(t, bin, env, "apply", "-k", "overlays/vpp")
	if !strings.Contains(out, "customresourcedefinition.apiextensions.k8s.io/ipblocks.telcni.io created") {
		t.Fatalf("apply:\n%s", out)
	}
	kubectl(t, bin, env, "wait", "--for=condition=Established", "crd/ipblocks.telcni.io", "crd/ipreservations.telcni.io", "--timeout=30s")
	ds, err := env.Clientset.AppsV1().DaemonSets("telcni-system").Get(ctx, "telcni-agent", metav1.GetOptions{})
	if err != nil || !strings.Contains(strings.Join(ds.Spec.Template.Spec.Containers[0].Args, " "), "-vpp-api-socket=/run/vpp/api.sock") {
		t.Errorf("the vpp overlay's DaemonSet: %v %v", ds.Spec.Template.Spec.Containers[0].Args, err)
	}

	// The CRDs' CEL rules.
	dyn := dynamic.NewForConfigOrDie(env.Config)
	good := map[string]any{"network": "ran/fronthaul", "cidr": "10.20.0.64/26", "node": "node-a"}
	if _, err := dyn.Resource(blocks).Create(ctx, obj("IPBlock", "b1", good), metav1.CreateOptions{}); err != nil {
		t.Fatalf("a valid IPBlock: %v", err)
	}
	_, err = dyn.Resource(blocks).Create(ctx, obj("IPBlock", "b2", map[string]any{"network": "ran/fronthaul", "cidr": "10.20.0.5/24", "node": "node-a"}), metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "cidr must be the block's network address") {
		t.Errorf("an IPBlock with host bits: %v", err)
	}
	_, err = dyn.Resource(res).Create(ctx, obj("IPReservation", "r1", map[string]any{"network": "ran/fronthaul", "address": "not-an-ip",
		"containerID": "c1", "ifName": "net1", "node": "node-a"}), metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "address must be an IP address") {
		t.Errorf("an IPReservation with a bad address: %v", err)
	}
	patch := []byte(`{"spec":{"node":"node-b"}}`)
	if _, err := dyn.Resource(blocks).Patch(ctx, "b1", types.MergePatchType, patch, metav1.PatchOptions{}); err == nil || !strings.Contains(err.Error(), "spec is immutable") {
		t.Errorf("moving a block to another node: %v", err)
	}

	// Least privilege for the agent's service account.
	as := rest.CopyConfig(env.Config)
	as.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:telcni-system:telcni-agent",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:telcni-system", "system:authenticated"}}
	agent := kubernetes.NewForConfigOrDie(as)
	agentDyn := dynamic.NewForConfigOrDie(as)
	kubectl(t, bin, env, "create", "namespace", "ran")
	pod, err := env.Clientset.CoreV1().Pods("ran").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "du-1", Namespace: "ran"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := agent.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("the agent cannot list pods: %v", err)
	}
	if _, err := agentDyn.Resource(res).Create(ctx, obj("IPReservation", "r2", map[string]any{"network": "ran/fronthaul", "address": "10.20.0.5",
		"containerID": "c1", "ifName": "net1", "node": "node-a"}), metav1.CreateOptions{}); err != nil {
		t.Errorf("the agent cannot reserve an address: %v", err)
	}
	if _, err := agent.CoreV1().Secrets("").List(ctx, metav1.ListOptions{}); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("the agent may list secrets: %v", err)
	}
	if err := agent.CoreV1().Pods("ran").Delete(ctx, "du-1", metav1.DeleteOptions{}); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("the agent may delete pods: %v", err)
	}
	status, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{"k8s.v1.cni.cncf.io/network-status": `[]`}}})
	if _, err := agent.CoreV1().Pods("ran").Patch(ctx, "du-1", types.MergePatchType, status, metav1.PatchOptions{}); err != nil {
		t.Errorf("the agent cannot write network-status: %v", err)
	}
	label := []byte(`{"metadata":{"labels":{"evil":"yes"}}}`)
	if _, err := agent.CoreV1().Pods("ran").Patch(ctx, "du-1", types.MergePatchType, label, metav1.PatchOptions{}); err == nil || !strings.Contains(err.Error(), "only the network-status annotation") {
		t.Errorf("the agent may relabel a pod: %v", err)
	}
	other := []byte(`{"metadata":{"annotations":{"k8s.v1.cni.cncf.io/networks":"evil"}}}`)
	if _, err := agent.CoreV1().Pods("ran").Patch(ctx, "du-1", types.MergePatchType, other, metav1.PatchOptions{}); err == nil || !strings.Contains(err.Error(), "only the network-status annotation") {
		t.Errorf("the agent may change another annotation: %v", err)
	}
	// The policy binds the agent only: an admin still relabels.
	if _, err := env.Clientset.CoreV1().Pods("ran").Patch(ctx, pod.Name, types.MergePatchType, label, metav1.PatchOptions{}); err != nil {
		t.Errorf("the policy hit another user: %v", err)
	}
}
