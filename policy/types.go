package policy

import (
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// PolicyForAnnotation binds a MultiNetworkPolicy to networks: a comma
// separated list of "name" (a network of the policy's namespace) or
// "namespace/name".
const PolicyForAnnotation = "k8s.v1.cni.cncf.io/policy-for"

// GVR is the MultiNetworkPolicy resource as the NPWG defines it.
var GVR = schema.GroupVersionResource{Group: "k8s.cni.cncf.io", Version: "v1beta1", Resource: "multi-networkpolicies"}

// MultiNetworkPolicy is the NPWG resource: NetworkPolicy's spec under
// another kind. The JSON schema is the NPWG client's, so objects from the
// dynamic client convert into it without the client module.
type MultiNetworkPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              networkingv1.NetworkPolicySpec `json:"spec,omitempty"`
}
