package kube

import (
	"strings"
	"testing"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/telcni/telcni/api"
)

func TestResourceNameAnnotation(t *testing.T) {
	nad := func(ann, config string) (*api.Network, error) {
		n := &nadv1.NetworkAttachmentDefinition{ObjectMeta: metav1.ObjectMeta{Name: "fh", Namespace: "ran"}}
		if ann != "" {
			n.Annotations = map[string]string{ResourceNameAnnotation: ann}
		}
		net, err := api.ParseNAD(n.Name, n.Namespace, config)
		if err != nil {
			t.Fatal(err)
		}
		return net, resourceFromAnnotation(net, n)
	}
	sriov := `{"type":"telcni","path":"sriov","master":"p0"}`
	n, err := nad("intel.com/sriov_netdevice", sriov)
	if err != nil || n.SRIOV == nil || n.SRIOV.ResourceName != "intel.com/sriov_netdevice" {
		t.Errorf("annotation on an sriov NAD: %+v, %v", n.SRIOV, err)
	}
	if n, err = nad("intel.com/vf", `{"type":"telcni","path":"sriov","master":"p0","sriov":{"resourceName":"intel.com/vf"}}`); err != nil || n.SRIOV.ResourceName != "intel.com/vf" {
		t.Errorf("annotation equal to the config: %+v, %v", n.SRIOV, err)
	}
	if _, err = nad("intel.com/other", `{"type":"telcni","path":"sriov","master":"p0","sriov":{"resourceName":"intel.com/vf"}}`); err == nil || !strings.Contains(err.Error(), `"intel.com/other" differs from spec.config.sriov.resourceName "intel.com/vf"`) {
		t.Errorf("conflicting annotation: %v", err)
	}
	if _, err = nad("sriov_netdevice", sriov); err == nil || !strings.Contains(err.Error(), ResourceNameAnnotation+`: "sriov_netdevice" is not an extended resource name`) {
		t.Errorf("malformed annotation: %v", err)
	}
	if n, err = nad("intel.com/vf", `{"type":"telcni","path":"macvlan","master":"eth1"}`); err != nil || n.SRIOV != nil {
		t.Errorf("a macvlan NAD takes no device: %+v, %v", n.SRIOV, err)
	}
}
