package kubetest

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensions "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func TestMain(m *testing.M) {
	code := m.Run()
	Stop()
	os.Exit(code)
}

// TestStart: an API server of the test's own, reachable through the
// kubeconfig file it wrote (as a binary taking -kubeconfig would).
func TestStart(t *testing.T) {
	env := Start(t)
	cfg, err := clientcmd.BuildConfigFromFlags("", env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("server version through %s: %v", env.Kubeconfig, err)
	}
	t.Logf("kube-apiserver %s", v.GitVersion)
	if _, err := env.Clientset.CoreV1().Namespaces().Get(context.Background(), "kube-system", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
}

const celMessage = "spec.min must not exceed spec.max"

// TestCRDCEL: a CRD with a structural schema and a CEL rule is served, and
// the API server enforces the rule.
func TestCRDCEL(t *testing.T) {
	env := Shared(t)
	ns := env.Namespace(t)
	ctx := context.Background()
	ax := apiextensions.NewForConfigOrDie(env.Config)
	crd := &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "ranges.kubetest.telcni.io"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "kubetest.telcni.io",
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "ranges", Singular: "range", Kind: "Range", ListKind: "RangeList"},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object",
					Properties: map[string]apiextensionsv1.JSONSchemaProps{
						"spec": {
							Type:     "object",
							Required: []string{"min", "max"},
							Properties: map[string]apiextensionsv1.JSONSchemaProps{
								"min": {Type: "integer"},
								"max": {Type: "integer"},
							},
							XValidations: apiextensionsv1.ValidationRules{{Rule: "self.min <= self.max", Message: celMessage}},
						},
					},
				}},
			}},
		},
	}
	if _, err := ax.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create CRD: %v", err)
	}
	t.Cleanup(func() {
		_ = ax.ApiextensionsV1().CustomResourceDefinitions().Delete(context.Background(), crd.Name, metav1.DeleteOptions{})
	})
	waitFor(t, 30*time.Second, "CRD "+crd.Name+" Established", func() bool {
		got, err := ax.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range got.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				return true
			}
		}
		return false
	})

	ranges := dynamic.NewForConfigOrDie(env.Config).Resource(schema.GroupVersionResource{Group: "kubetest.telcni.io", Version: "v1", Resource: "ranges"}).Namespace(ns)
	obj := func(name string, lo, hi int64) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "kubetest.telcni.io/v1", "kind": "Range",
			"metadata": map[string]any{"name": name},
			"spec":     map[string]any{"min": lo, "max": hi},
		}}
	}
	_, err := ranges.Create(ctx, obj("bad", 5, 1), metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), celMessage) {
		t.Fatalf("create with min > max: got %v, want Invalid naming %q", err, celMessage)
	}
	t.Logf("CEL rule enforced: %v", err)
	if _, err := ranges.Create(ctx, obj("good", 1, 5), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create with min <= max: %v", err)
	}
}

// TestAgentLeastPrivilege: the agent user can do nothing until RBAC grants
// it something, then exactly that.
func TestAgentLeastPrivilege(t *testing.T) {
	env := Shared(t)
	if Shared(t) != env {
		t.Fatal("Shared started a second API server")
	}
	ns := env.Namespace(t)
	ctx := context.Background()
	agent := kubernetes.NewForConfigOrDie(env.AgentConfig)

	_, err := agent.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `"`+AgentUser+`"`) {
		t.Fatalf("agent lists pods without RBAC: got %v, want Forbidden for %s", err, AgentUser)
	}
	t.Logf("before RBAC: %v", err)

	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}}},
	}
	if _, err := env.Clientset.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "agent-pod-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: AgentUser}},
	}
	if _, err := env.Clientset.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "agent allowed to list pods in "+ns, func() bool {
		_, err := agent.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		return err == nil
	})
	if _, err := agent.CoreV1().Pods("default").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("agent lists pods in another namespace: got %v, want Forbidden", err)
	}
	if _, err := agent.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("agent lists secrets: got %v, want Forbidden", err)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
