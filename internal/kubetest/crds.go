package kubetest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"
)

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// InstallCRDs creates the CRDs shipped in deploy/kubernetes (telcni.io and
// the NPWG NetworkAttachmentDefinition and MultiNetworkPolicy) and waits
// until they are served.
func (e *Env) InstallCRDs(t testing.TB) {
	t.Helper()
	root := moduleRoot()
	files, _ := filepath.Glob(filepath.Join(root, "deploy/kubernetes/base/crds/*.yaml"))
	nad, _ := filepath.Glob(filepath.Join(root, "deploy/kubernetes/nad-crd/*.yaml"))
	mnp, _ := filepath.Glob(filepath.Join(root, "deploy/kubernetes/multi-networkpolicy-crd/*.yaml"))
	files = append(append(files, nad...), mnp...)
	dyn := dynamic.NewForConfigOrDie(e.Config)
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range strings.Split(string(data), "\n---") {
			var obj map[string]any
			if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if obj["kind"] != "CustomResourceDefinition" {
				continue
			}
			u := &unstructured.Unstructured{Object: obj}
			if _, err := dyn.Resource(crdGVR).Create(context.Background(), u, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatalf("create CRD %s from %s: %v", u.GetName(), f, err)
			}
			n++
		}
	}
	if n < 4 {
		t.Fatalf("found %d CRDs under %s/deploy/kubernetes, want IPBlock, IPReservation, NetworkAttachmentDefinition and MultiNetworkPolicy", n, root)
	}
	dc := discovery.NewDiscoveryClientForConfigOrDie(e.Config)
	deadline := time.Now().Add(30 * time.Second)
	for _, gv := range []string{"telcni.io/v1alpha1", "k8s.cni.cncf.io/v1", "k8s.cni.cncf.io/v1beta1"} {
		for {
			if _, err := dc.ServerResourcesForGroupVersion(gv); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not served 30 s after creating its CRD", gv)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}
