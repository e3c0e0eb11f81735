// Package deploy_test proves the manifests in deploy/kubernetes against a
// real kube-apiserver (internal/kubetest): both overlays and the examples
// pass a server-side dry run, the CRDs' schemas and CEL rules hold, and the
// agent's service account has what it needs and nothing more, its pod
// patches narrowed to the network-status annotation by the admission
// policy.
package deploy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/internal/kubetest"
	"github.com/telcni/telcni/policy"
)

const (
	agentSA  = "system:serviceaccount:telcni-system:telcni-agent"
	statusAn = "k8s.v1.cni.cncf.io/network-status"
)

var (
	blocksGVR = schema.GroupVersionResource{Group: "telcni.io", Version: "v1alpha1", Resource: "ipblocks"}
	resGVR    = schema.GroupVersionResource{Group: "telcni.io", Version: "v1alpha1", Resource: "ipreservations"}
	agentGrps = []string{"system:serviceaccounts", "system:serviceaccounts:telcni-system", "system:authenticated"}
)

// TestDeploy runs one API server for every part (starting one is the slow
// step); each part sets up what it needs, so any one runs alone with -run.
func TestDeploy(t *testing.T) {
	env := kubetest.Start(t)
	t.Run("DryRun", func(t *testing.T) { testDryRun(t, env) })
	t.Run("CRDs", func(t *testing.T) { testCRDs(t, env) })
	t.Run("RBAC", func(t *testing.T) { testRBAC(t, env) })
}

// TestExamples: the example NADs are networks telcni accepts, and the
// example pod's annotation selects them.
func TestExamples(t *testing.T) {
	var nads, pods, policies int
	var du *policy.Pod
	var mnps []*policy.MultiNetworkPolicy
	for _, doc := range docs(t, "examples/networks.yaml", "examples/pod.yaml", "examples/policy.yaml") {
		switch doc.GetKind() {
		case "NetworkAttachmentDefinition":
			config, _, _ := unstructured.NestedString(doc.Object, "spec", "config")
			n, err := api.ParseNAD(doc.GetName(), doc.GetNamespace(), config)
			if err != nil {
				t.Errorf("examples: NAD %s/%s: %v", doc.GetNamespace(), doc.GetName(), err)
				continue
			}
			t.Logf("NAD %s/%s: path %s", doc.GetNamespace(), doc.GetName(), n.Path)
			nads++
		case "Pod":
			sel, err := api.ParseSelections(doc.GetAnnotations()["k8s.v1.cni.cncf.io/networks"], doc.GetNamespace())
			if err != nil || len(sel) != 2 {
				t.Errorf("examples: pod %s: selections %+v: %v", doc.GetName(), sel, err)
			}
			pods++
			du = &policy.Pod{Namespace: doc.GetNamespace(), Name: doc.GetName(), Labels: doc.GetLabels()}
		case "MultiNetworkPolicy":
			var p policy.MultiNetworkPolicy
			b, _ := json.Marshal(doc.Object)
			if err := json.Unmarshal(b, &p); err != nil {
				t.Errorf("examples: MultiNetworkPolicy %s: %v", doc.GetName(), err)
				continue
			}
			mnps = append(mnps, &p)
			policies++
		}
	}
	if nads != 2 || pods != 1 || policies != 1 {
		t.Errorf("examples: %d NADs, %d pods and %d policies, want 2, 1 and 1", nads, pods, policies)
	}
	// The policy isolates the example pod's fronthaul interface, not its
	// memif, and compiles without ignoring anything: no ru pod exists, so
	// what it allows is the core's /16 without its last /24 (8 prefixes).
	if du != nil {
		x := policy.NewIndex(&policy.Input{Policies: mnps, Pods: []*policy.Pod{du}})
		fh, _ := x.Compile(policy.Target{Pod: du, Network: "ran/fronthaul"})
		up, _ := x.Compile(policy.Target{Pod: du, Network: "ran/userplane-fast"})
		if !fh.Ingress.Isolated || len(fh.Ingress.Allow) != 8 || fh.Egress.Isolated || !up.Open() || len(x.Notes) != 0 {
			t.Errorf("examples: policy on du-1: fronthaul %+v, userplane %+v, notes %q", fh, up, x.Notes)
		}
	}
}

// testDryRun: with the NAD CRD and telcni's CRDs applied for real (a dry
// run of a custom resource needs its CRD) and the namespaces created (so
// do namespaced objects), `kubectl apply --dry-run=server -k` of each
// overlay and of the examples is accepted: every object passes the API
// server's validation and admission. The DaemonSet the server would store
// is then checked field by field.
func testDryRun(t *testing.T, env *kubetest.Env) {
	kubectl := kubectlBin(t)
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig", env.Kubeconfig}, args...)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
		}
		return string(out)
	}
	run("apply", "-k", "nad-crd")
	run("apply", "-k", "multi-networkpolicy-crd")
	run("apply", "-f", "base/crds")
	run("wait", "--for=condition=Established", "--timeout=30s",
		"crd/network-attachment-definitions.k8s.cni.cncf.io", "crd/multi-networkpolicies.k8s.cni.cncf.io",
		"crd/ipblocks.telcni.io", "crd/ipreservations.telcni.io")
	run("apply", "-f", "base/namespace.yaml", "-f", "examples/namespace.yaml")

	want := []string{
		"Namespace/telcni-system",
		"CustomResourceDefinition/ipblocks.telcni.io", "CustomResourceDefinition/ipreservations.telcni.io",
		"ServiceAccount/telcni-agent", "ClusterRole/telcni-agent", "ClusterRoleBinding/telcni-agent",
		"Role/telcni-agent-leader", "RoleBinding/telcni-agent-leader",
		"ValidatingAdmissionPolicy/telcni-agent-pod-status-only", "ValidatingAdmissionPolicyBinding/telcni-agent-pod-status-only",
		"DaemonSet/telcni-agent",
	}
	for _, overlay := range []string{"overlays/kernel-only", "overlays/vpp"} {
		objs := list(t, run("apply", "--dry-run=server", "-o", "json", "-k", overlay))
		var got []string
		var ds *unstructured.Unstructured
		for _, o := range objs {
			got = append(got, o.GetKind()+"/"+o.GetName())
			if o.GetKind() == "DaemonSet" {
				ds = o
			}
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: the server dry run made\n  %v\nwant\n  %v", overlay, got, want)
		}
		if ds == nil {
			continue
		}
		checkDaemonSet(t, overlay, ds)
	}
	var kinds []string
	for _, o := range list(t, run("apply", "--dry-run=server", "-o", "json", "-k", "examples")) {
		kinds = append(kinds, o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName())
	}
	if len(kinds) != 5 {
		t.Errorf("examples: the server dry run made %v, want a namespace, two NADs, a pod and a MultiNetworkPolicy", kinds)
	}
}

// checkDaemonSet checks the agent's DaemonSet as the API server would store
// it (defaults applied).
func checkDaemonSet(t *testing.T, overlay string, u *unstructured.Unstructured) {
	t.Helper()
	var ds struct {
		Spec struct {
			Template struct {
				Spec corev1.PodSpec `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	b, _ := json.Marshal(u.Object)
	if err := json.Unmarshal(b, &ds); err != nil {
		t.Fatal(err)
	}
	ps := ds.Spec.Template.Spec
	errorf := func(format string, args ...any) { t.Errorf(overlay+": DaemonSet: "+format, args...) }
	if !ps.HostNetwork || !ps.HostPID || ps.PriorityClassName != "system-node-critical" || ps.ServiceAccountName != "telcni-agent" {
		errorf("hostNetwork %v hostPID %v priorityClassName %q serviceAccountName %q",
			ps.HostNetwork, ps.HostPID, ps.PriorityClassName, ps.ServiceAccountName)
	}
	if !slices.ContainsFunc(ps.Tolerations, func(tl corev1.Toleration) bool {
		return tl.Operator == corev1.TolerationOpExists && tl.Key == "" && tl.Effect == ""
	}) {
		errorf("no toleration of every taint: %+v", ps.Tolerations)
	}
	hostPaths := map[string]string{}
	for _, v := range ps.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	mounts := func(c corev1.Container) map[string]corev1.VolumeMount {
		m := map[string]corev1.VolumeMount{}
		for _, vm := range c.VolumeMounts {
			m[hostPaths[vm.Name]] = vm
		}
		return m
	}
	if len(ps.InitContainers) != 1 {
		errorf("%d init containers, want telcni-install", len(ps.InitContainers))
	} else {
		ic := ps.InitContainers[0]
		sc := ic.SecurityContext
		if !slices.Contains(ic.Command, "/usr/local/bin/telcni-install") || sc == nil || (sc.Privileged != nil && *sc.Privileged) ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			errorf("init container %s %v: %+v, want telcni-install, not privileged", ic.Name, ic.Command, sc)
		}
		m := mounts(ic)
		if len(m) != 2 || m["/opt/cni/bin"].MountPath != "/host/opt/cni/bin" || m["/etc/cni/net.d"].MountPath != "/host/etc/cni/net.d" {
			errorf("init container mounts %+v, want only the CNI bin and conf dirs", ic.VolumeMounts)
		}
	}
	if len(ps.Containers) != 1 {
		errorf("%d containers, want the agent", len(ps.Containers))
		return
	}
	ag := ps.Containers[0]
	if ag.Image != "ghcr.io/telcni/telcni:latest" || ag.SecurityContext == nil || ag.SecurityContext.Privileged == nil || !*ag.SecurityContext.Privileged {
		errorf("agent image %q securityContext %+v, want privileged", ag.Image, ag.SecurityContext)
	}
	if len(ag.Env) != 1 || ag.Env[0].Name != "NODE_NAME" || ag.Env[0].ValueFrom == nil ||
		ag.Env[0].ValueFrom.FieldRef == nil || ag.Env[0].ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		errorf("agent env %+v, want NODE_NAME from spec.nodeName", ag.Env)
	}
	if ag.Resources.Requests.Cpu().IsZero() || ag.Resources.Requests.Memory().IsZero() {
		errorf("agent requests %v", ag.Resources.Requests)
	}
	m := mounts(ag)
	wantMounts := map[string]string{"/var/run/netns": "/var/run/netns", "/run/telcni": "/run/telcni", "/var/lib/telcni": "/var/lib/telcni", "/sys": "/sys",
		"/var/lib/kubelet/pod-resources": "/var/lib/kubelet/pod-resources"}
	vpp := overlay == "overlays/vpp"
	if vpp {
		wantMounts["/run/vpp"] = "/run/vpp"
	}
	if len(m) != len(wantMounts) {
		errorf("agent mounts %+v, want host paths %v", ag.VolumeMounts, wantMounts)
	}
	for host, in := range wantMounts {
		if m[host].MountPath != in {
			errorf("agent: host %s mounted at %q, want %s", host, m[host].MountPath, in)
		}
	}
	if p := m["/var/run/netns"].MountPropagation; p == nil || *p != corev1.MountPropagationHostToContainer {
		errorf("agent: /var/run/netns without HostToContainer propagation")
	}
	args := strings.Join(ag.Args, " ")
	hasVPPArgs := strings.Contains(args, "-vpp-api-socket=/run/vpp/api.sock") && strings.Contains(args, "-vpp-stats-socket=/run/vpp/stats.sock")
	if hasVPPArgs != vpp || !strings.Contains(args, "-socket=/run/telcni/agent.sock") {
		errorf("agent args %q (VPP sockets wanted: %v)", args, vpp)
	}
}

// testCRDs: the CRDs' schemas and CEL rules, on the API server.
func testCRDs(t *testing.T, env *kubetest.Env) {
	env.InstallCRDs(t)
	ctx := context.Background()
	dyn := dynamic.NewForConfigOrDie(env.Config)
	create := func(gvr schema.GroupVersionResource, kind, name string, spec map[string]any) error {
		_, err := dyn.Resource(gvr).Create(ctx, obj(kind, name, spec), metav1.CreateOptions{})
		return err
	}
	block := func(cidr, node string) map[string]any {
		return map[string]any{"network": "ran/fronthaul", "cidr": cidr, "node": node}
	}
	reservation := func(addr string) map[string]any {
		return map[string]any{"network": "ran/fronthaul", "address": addr, "containerID": "c1", "ifName": "net1", "node": "node-a",
			"podNamespace": "ran", "podName": "du-1", "podUID": "0b6a2c1e-9a53-4c8e-8d6f-2f1c3e4d5a6b"}
	}
	for _, c := range []struct{ name, cidr string }{{"v4", "10.20.0.64/26"}, {"v6", "fd00:20::40/122"}} {
		if err := create(blocksGVR, "IPBlock", "blk-"+c.name, block(c.cidr, "node-a")); err != nil {
			t.Errorf("a valid IPBlock %s: %v", c.cidr, err)
		}
	}
	for _, addr := range []string{"10.20.0.11", "fd00:20::b"} {
		if err := create(resGVR, "IPReservation", "res-"+strings.NewReplacer(".", "-", ":", "-").Replace(addr), reservation(addr)); err != nil {
			t.Errorf("a valid IPReservation %s: %v", addr, err)
		}
	}
	type refusal struct {
		what string
		err  error
		want string
	}
	refused := []refusal{
		{"a block with host bits", create(blocksGVR, "IPBlock", "bad-1", block("10.0.0.5/24", "node-a")), "cidr must be the block's network address (no host bits)"},
		{"a block that is no CIDR", create(blocksGVR, "IPBlock", "bad-2", block("10.0.0.5", "node-a")), "cidr must be a CIDR"},
		{"a block with no node", create(blocksGVR, "IPBlock", "bad-3", map[string]any{"network": "ran/fronthaul", "cidr": "10.0.0.0/26"}), "spec.node: Required value"},
		{"a block with an empty node", create(blocksGVR, "IPBlock", "bad-4", block("10.0.0.0/26", "")), "spec.node: Invalid value"},
		{"a reservation of no IP", create(resGVR, "IPReservation", "bad-5", reservation("not-an-ip")), "address must be an IP address"},
		{"a reservation of a CIDR", create(resGVR, "IPReservation", "bad-6", reservation("10.20.0.11/24")), "address must be an IP address"},
		{"a reservation with no containerID", create(resGVR, "IPReservation", "bad-7", map[string]any{"network": "n", "address": "10.0.0.1", "ifName": "net1", "node": "a"}), "spec.containerID: Required value"},
	}
	// Structural schemas: an unknown field is pruned (a warning), or
	// refused when the client asks for strict field validation.
	_, err := dyn.Resource(blocksGVR).Create(ctx, obj("IPBlock", "bad-8", map[string]any{"network": "n", "cidr": "10.0.0.0/26", "node": "a", "extra": "x"}),
		metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict})
	refused = append(refused, refusal{"a block with an unknown field", err, `unknown field "spec.extra"`})
	for _, r := range refused {
		if r.err == nil || !strings.Contains(r.err.Error(), r.want) {
			t.Errorf("%s: %v, want refused with %q", r.what, r.err, r.want)
		}
	}

	// Objects are created and deleted, never changed: moving a block to
	// another node is refused; its labels may change.
	for _, p := range []struct{ gvr schema.GroupVersionResource }{{blocksGVR}, {resGVR}} {
		name := "blk-v4"
		if p.gvr == resGVR {
			name = "res-10-20-0-11"
		}
		_, err := dyn.Resource(p.gvr).Patch(ctx, name, types.MergePatchType, []byte(`{"spec":{"node":"node-b"}}`), metav1.PatchOptions{})
		if err == nil || !strings.Contains(err.Error(), "spec is immutable") {
			t.Errorf("%s %s: changing spec.node: %v, want refused as immutable", p.gvr.Resource, name, err)
		}
	}
	if _, err := dyn.Resource(blocksGVR).Patch(ctx, "blk-v4", types.MergePatchType, []byte(`{"metadata":{"labels":{"telcni.io/node":"node-a"}}}`), metav1.PatchOptions{}); err != nil {
		t.Errorf("labelling a block: %v", err)
	}
}

// testRBAC: the base applied for real; the agent's service account
// (impersonated) has exactly its permissions, and the admission policy
// narrows its pod updates to network-status without touching other users.
func testRBAC(t *testing.T, env *kubetest.Env) {
	env.InstallCRDs(t) // the NAD CRD is not in the base
	apply(t, env, "base")
	ctx := context.Background()
	as := rest.CopyConfig(env.Config)
	as.Impersonate = rest.ImpersonationConfig{UserName: agentSA, Groups: agentGrps}
	agent := kubernetes.NewForConfigOrDie(as)
	agentDyn := dynamic.NewForConfigOrDie(as)

	// The whole matrix, as the authorizer answers for the service account.
	type access struct{ verb, group, resource, ns string }
	allowed := []access{
		{"get", "", "pods", "ran"}, {"list", "", "pods", ""}, {"watch", "", "pods", ""}, {"patch", "", "pods", "ran"},
		{"get", "", "nodes", ""}, {"list", "", "nodes", ""}, {"watch", "", "nodes", ""},
		{"get", "", "namespaces", ""}, {"list", "", "namespaces", ""}, {"watch", "", "namespaces", ""},
		{"get", "k8s.cni.cncf.io", "network-attachment-definitions", "ran"}, {"list", "k8s.cni.cncf.io", "network-attachment-definitions", ""},
		{"watch", "k8s.cni.cncf.io", "network-attachment-definitions", ""},
		{"get", "k8s.cni.cncf.io", "multi-networkpolicies", "ran"}, {"list", "k8s.cni.cncf.io", "multi-networkpolicies", ""},
		{"watch", "k8s.cni.cncf.io", "multi-networkpolicies", ""},
		{"create", "", "events", "ran"}, {"patch", "", "events", "ran"}, {"create", "events.k8s.io", "events", "ran"}, {"patch", "events.k8s.io", "events", "ran"},
		{"get", "telcni.io", "ipblocks", ""}, {"list", "telcni.io", "ipblocks", ""}, {"watch", "telcni.io", "ipblocks", ""},
		{"create", "telcni.io", "ipblocks", ""}, {"delete", "telcni.io", "ipblocks", ""},
		{"get", "telcni.io", "ipreservations", ""}, {"list", "telcni.io", "ipreservations", ""}, {"watch", "telcni.io", "ipreservations", ""},
		{"create", "telcni.io", "ipreservations", ""}, {"delete", "telcni.io", "ipreservations", ""},
		{"get", "coordination.k8s.io", "leases", "telcni-system"}, {"create", "coordination.k8s.io", "leases", "telcni-system"},
		{"update", "coordination.k8s.io", "leases", "telcni-system"},
	}
	denied := []access{
		{"list", "", "secrets", ""}, {"get", "", "secrets", "telcni-system"}, {"get", "", "configmaps", "telcni-system"},
		{"create", "", "pods", "ran"}, {"delete", "", "pods", "ran"}, {"update", "", "pods", "ran"}, {"deletecollection", "", "pods", "ran"},
		{"patch", "", "nodes", ""}, {"update", "", "nodes", ""}, {"delete", "", "nodes", ""},
		{"create", "", "namespaces", ""}, {"delete", "", "namespaces", ""}, {"update", "", "namespaces", ""},
		{"create", "k8s.cni.cncf.io", "network-attachment-definitions", "ran"}, {"update", "k8s.cni.cncf.io", "network-attachment-definitions", "ran"},
		{"delete", "k8s.cni.cncf.io", "network-attachment-definitions", "ran"},
		{"create", "k8s.cni.cncf.io", "multi-networkpolicies", "ran"}, {"update", "k8s.cni.cncf.io", "multi-networkpolicies", "ran"},
		{"patch", "k8s.cni.cncf.io", "multi-networkpolicies", "ran"}, {"delete", "k8s.cni.cncf.io", "multi-networkpolicies", "ran"},
		{"delete", "", "events", "ran"}, {"update", "telcni.io", "ipblocks", ""}, {"patch", "telcni.io", "ipreservations", ""},
		{"deletecollection", "telcni.io", "ipblocks", ""},
		{"create", "coordination.k8s.io", "leases", "kube-system"}, {"delete", "coordination.k8s.io", "leases", "telcni-system"},
		{"list", "coordination.k8s.io", "leases", "telcni-system"},
		{"patch", "apps", "daemonsets", "telcni-system"}, {"create", "rbac.authorization.k8s.io", "clusterrolebindings", ""},
		{"create", "", "serviceaccounts/token", "telcni-system"},
	}
	sar := func(a access) bool {
		t.Helper()
		r, err := env.Clientset.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{User: agentSA, Groups: agentGrps,
				ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: a.verb, Group: a.group, Resource: a.resource, Namespace: a.ns}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return r.Status.Allowed
	}
	for _, a := range allowed {
		if !sar(a) {
			t.Errorf("the agent may not %s %s.%s in %q", a.verb, a.resource, a.group, a.ns)
		}
	}
	for _, a := range denied {
		if sar(a) {
			t.Errorf("the agent may %s %s.%s in %q", a.verb, a.resource, a.group, a.ns)
		}
	}

	// Real requests as the agent.
	pod, err := env.Clientset.CoreV1().Pods("ran").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "du-1", Namespace: "ran", Labels: map[string]string{"app": "du"},
			Annotations: map[string]string{"k8s.v1.cni.cncf.io/networks": "fronthaul"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := agent.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("the agent cannot list pods: %v", err)
	}
	// What the policy controller's informers list, cluster-wide.
	mnpGVR := schema.GroupVersionResource{Group: "k8s.cni.cncf.io", Version: "v1beta1", Resource: "multi-networkpolicies"}
	if _, err := agentDyn.Resource(mnpGVR).List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("the agent cannot list MultiNetworkPolicies: %v", err)
	}
	if _, err := agent.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("the agent cannot list namespaces: %v", err)
	}
	r := obj("IPReservation", "res-rbac", map[string]any{"network": "ran/fronthaul", "address": "10.20.0.12",
		"containerID": "c1", "ifName": "net1", "node": "node-a"})
	r.SetLabels(map[string]string{"telcni.io/network": "0123456789abcdef", "telcni.io/node": "node-a"})
	if _, err := agentDyn.Resource(resGVR).Create(ctx, r, metav1.CreateOptions{}); err != nil {
		t.Errorf("the agent cannot reserve an address: %v", err)
	}
	if _, err := agent.CoreV1().Secrets("").List(ctx, metav1.ListOptions{}); !forbidden(err) {
		t.Errorf("listing secrets as the agent: %v, want forbidden", err)
	}
	if err := agent.CoreV1().Pods("ran").Delete(ctx, "du-1", metav1.DeleteOptions{}); !forbidden(err) {
		t.Errorf("deleting a pod as the agent: %v, want forbidden", err)
	}

	// The admission policy. It is enforced once the API server has loaded
	// it: until then a probe label patch goes through, each with a new value.
	patch := func(who kubernetes.Interface, body map[string]any) error {
		b, _ := json.Marshal(body)
		_, err := who.CoreV1().Pods("ran").Patch(ctx, "du-1", types.MergePatchType, b, metav1.PatchOptions{FieldManager: "telcni-agent"})
		return err
	}
	meta := func(m map[string]any) map[string]any {
		m["uid"] = string(pod.UID) // as the agent patches: UID precondition
		return map[string]any{"metadata": m}
	}
	const denial = "telcni-agent may change only the k8s.v1.cni.cncf.io/network-status annotation of a pod"
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		err := patch(agent, meta(map[string]any{"labels": map[string]any{"probe": fmt.Sprint(i)}}))
		if err != nil && strings.Contains(err.Error(), denial) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the admission policy is not enforced 30 s after the apply: the label patch gave %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ann := func(kv map[string]any) map[string]any { return meta(map[string]any{"annotations": kv}) }
	for _, c := range []struct {
		what string
		body map[string]any
	}{
		{"add network-status", ann(map[string]any{statusAn: `[{"name":"ran/fronthaul","interface":"net1","ips":["10.20.0.100"]}]`})},
		{"change network-status", ann(map[string]any{statusAn: `[]`})},
		{"remove network-status", ann(map[string]any{statusAn: nil})},
		{"write network-status again", ann(map[string]any{statusAn: `[]`})},
	} {
		if err := patch(agent, c.body); err != nil {
			t.Errorf("the agent cannot %s: %v", c.what, err)
		}
	}
	for _, c := range []struct {
		what string
		body map[string]any
		why  string
	}{
		{"relabel a pod", meta(map[string]any{"labels": map[string]any{"app": "evil"}}), "labels changed"},
		{"remove a label", meta(map[string]any{"labels": map[string]any{"app": nil}}), "labels changed"},
		{"change another annotation", ann(map[string]any{"k8s.v1.cni.cncf.io/networks": "evil"}), "another annotation changed"},
		{"add an annotation beside network-status", ann(map[string]any{statusAn: `[{}]`, "x": "y"}), "another annotation changed"},
		{"remove another annotation", ann(map[string]any{"k8s.v1.cni.cncf.io/networks": nil}), "another annotation changed"},
		{"add a finalizer", meta(map[string]any{"finalizers": []string{"telcni.io/evil"}}), "finalizers changed"},
		{"change the spec", map[string]any{"metadata": map[string]any{"uid": string(pod.UID)}, "spec": map[string]any{"activeDeadlineSeconds": 5}}, "spec changed"},
	} {
		err := patch(agent, c.body)
		if err == nil || !strings.Contains(err.Error(), denial) || !strings.Contains(err.Error(), c.why) {
			t.Errorf("the agent may %s: %v, want refused (%s)", c.what, err, c.why)
		}
	}
	// Nothing the refused patches asked for happened.
	got, err := env.Clientset.CoreV1().Pods("ran").Get(ctx, "du-1", metav1.GetOptions{})
	if err != nil || got.Labels["app"] != "du" || got.Annotations["k8s.v1.cni.cncf.io/networks"] != "fronthaul" ||
		got.Annotations[statusAn] != "[]" || len(got.Finalizers) != 0 || got.Spec.ActiveDeadlineSeconds != nil {
		t.Errorf("the pod after the agent's patches: labels %v annotations %v finalizers %v (%v)", got.Labels, got.Annotations, got.Finalizers, err)
	}
	// The policy binds the agent only: another user, with or without
	// network-status, changes what it likes.
	for _, body := range []map[string]any{
		meta(map[string]any{"labels": map[string]any{"app": "du-2"}}),
		ann(map[string]any{statusAn: `[{}]`, "other": "yes"}),
		{"spec": map[string]any{"activeDeadlineSeconds": 3600}},
	} {
		if err := patch(env.Clientset, body); err != nil {
			t.Errorf("the policy hit another user: %v", err)
		}
	}
}

func obj(kind, name string, spec map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "telcni.io/v1alpha1", "kind": kind,
		"metadata": map[string]any{"name": name}, "spec": spec}}
}

func forbidden(err error) bool { return err != nil && strings.Contains(err.Error(), "forbidden") }

// list decodes kubectl's -o json output: one object or a List.
func list(t *testing.T, out string) []*unstructured.Unstructured {
	t.Helper()
	var u unstructured.Unstructured
	if err := json.Unmarshal([]byte(out), &u.Object); err != nil {
		t.Fatalf("kubectl output is not JSON: %v\n%s", err, out)
	}
	if !u.IsList() {
		return []*unstructured.Unstructured{&u}
	}
	l, err := u.ToList()
	if err != nil {
		t.Fatal(err)
	}
	var objs []*unstructured.Unstructured
	for i := range l.Items {
		objs = append(objs, &l.Items[i])
	}
	return objs
}

// docs reads the YAML documents of files.
func docs(t *testing.T, files ...string) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for doc := range strings.SplitSeq(string(data), "\n---") {
			var m map[string]any
			if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(m) > 0 {
				objs = append(objs, &unstructured.Unstructured{Object: m})
			}
		}
	}
	return objs
}

// apply applies a kustomization that only lists resources (as the base
// does) with server-side apply: the real apply of the RBAC and admission
// tests needs no kubectl.
func apply(t *testing.T, env *kubetest.Env, dir string) {
	t.Helper()
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatalf("%s/kustomization.yaml: %v (this test applies only a plain list of resources)", dir, err)
	}
	var files []string
	for _, r := range k.Resources {
		files = append(files, filepath.Join(dir, r))
	}
	objs := docs(t, files...)
	// CRDs and namespaces first, as kubectl orders them.
	slices.SortStableFunc(objs, func(a, b *unstructured.Unstructured) int {
		rank := func(o *unstructured.Unstructured) int {
			switch o.GetKind() {
			case "Namespace":
				return 0
			case "CustomResourceDefinition":
				return 1
			}
			return 2
		}
		return rank(a) - rank(b)
	})
	ctx := context.Background()
	dyn := dynamic.NewForConfigOrDie(env.Config)
	dc := discovery.NewDiscoveryClientForConfigOrDie(env.Config)
	groups, err := restmapper.GetAPIGroupResources(dc)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDiscoveryRESTMapper(groups)
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s %s: %v", gvk, o.GetName(), err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if ns := o.GetNamespace(); ns != "" {
			ri = dyn.Resource(m.Resource).Namespace(ns)
		}
		if _, err := ri.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: "deploy-test", Force: true}); err != nil {
			t.Fatalf("apply %s %s: %v", gvk.Kind, o.GetName(), err)
		}
	}
	if _, err := dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).Apply(ctx, "ran",
		&unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "ran"}}},
		metav1.ApplyOptions{FieldManager: "deploy-test"}); err != nil {
		t.Fatal(err)
	}
}

// kubectlBin is the kubectl of internal/kubetest (KUBECTL_BIN, the one
// `make deps-kube` builds, or PATH; a skip or, with TELCNI_REQUIRE_KUBE, a
// failure naming the make target without one).
func kubectlBin(t *testing.T) string { return kubetest.Kubectl(t) }
