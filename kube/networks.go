package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/telcni/telcni/api"
)

// Networks is the agent's api.NetworkSource in a cluster: telcni
// NetworkAttachmentDefinitions from the informer cache.
func (c *Cluster) Networks() api.NetworkSource { return c.networks }

// networkSource serves NADs whose spec.config has "type": "telcni",
// scoped to their namespace (plus the global namespaces). A NAD is parsed
// once per resourceVersion, not per call.
type networkSource struct {
	c      *Cluster
	mu     sync.Mutex
	parsed map[string]parsedNAD // namespace/name -> last parse
}

type parsedNAD struct {
	rv  string
	n   *api.Network
	err error
}

var (
	_ api.NetworkSource   = (*networkSource)(nil)
	_ api.NamespaceScoper = (*networkSource)(nil)
	_ api.ChangeReporter  = (*networkSource)(nil)
)

// Network returns the NAD name in namespace, else in the first global
// namespace that has one.
func (s *networkSource) Network(ctx context.Context, namespace, name string) (*api.Network, error) {
	for _, ns := range append([]string{namespace}, s.c.cfg.GlobalNamespaces...) {
		if ns == "" {
			continue
		}
		nad, err := s.c.nads.NetworkAttachmentDefinitions(ns).Get(name)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("NetworkAttachmentDefinition %s/%s: %w", ns, name, err)
		}
		return s.parse(nad)
	}
	return nil, fmt.Errorf("no NetworkAttachmentDefinition %q in namespace %q or the global namespaces %v: %w",
		name, namespace, s.c.cfg.GlobalNamespaces, api.ErrNetworkNotFound)
}

// Networks returns every telcni NAD that validates; NADs of other plugins
// are not telcni's and are left out, invalid ones are logged.
func (s *networkSource) Networks(ctx context.Context) ([]*api.Network, error) {
	nads, err := s.c.nads.List(labels.Everything())
	if err != nil {
		return nil, fmt.Errorf("list NetworkAttachmentDefinitions: %w", err)
	}
	var out []*api.Network
	for _, nad := range nads {
		if pluginType(nad.Spec.Config) != api.PluginTypeName {
			continue
		}
		n, err := s.parse(nad)
		if err != nil {
			s.c.log.Warn("invalid telcni NetworkAttachmentDefinition", "nad", nad.Namespace+"/"+nad.Name, "err", err)
			continue
		}
		out = append(out, n)
	}
	return out, nil
}

// NetworkRefused: see Cluster.NetworkRefused.
func (s *networkSource) NetworkRefused(key, msg string) { s.c.NetworkRefused(key, msg) }

// Visible: see Cluster.Visible.
func (s *networkSource) Visible(podNS, netNS string) bool { return s.c.Visible(podNS, netNS) }

func (s *networkSource) parse(nad *nadv1.NetworkAttachmentDefinition) (*api.Network, error) {
	key := nad.Namespace + "/" + nad.Name
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.parsed[key]; ok && p.rv == nad.ResourceVersion {
		return p.n, p.err
	}
	var p parsedNAD
	p.rv = nad.ResourceVersion
	if t := pluginType(nad.Spec.Config); t != api.PluginTypeName {
		p.err = fmt.Errorf("NetworkAttachmentDefinition %s is not a telcni network (its spec.config has type %q): %w", key, t, api.ErrInvalidNetwork)
	} else {
		p.n, p.err = api.ParseNAD(nad.Name, nad.Namespace, nad.Spec.Config)
		if p.err == nil {
			if p.err = resourceFromAnnotation(p.n, nad); p.err != nil {
				p.n = nil
			}
		}
		if p.err != nil {
			p.err = fmt.Errorf("NetworkAttachmentDefinition %s: %w", key, p.err)
			s.c.warn(nadRef(nad), "InvalidNetwork", p.err.Error())
		}
	}
	s.parsed[key] = p
	return p.n, p.err
}

func pluginType(config string) string {
	var probe struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal([]byte(config), &probe)
	return probe.Type
}

func nadRef(nad *nadv1.NetworkAttachmentDefinition) *corev1.ObjectReference {
	return &corev1.ObjectReference{Kind: "NetworkAttachmentDefinition", APIVersion: "k8s.cni.cncf.io/v1",
		Namespace: nad.Namespace, Name: nad.Name, UID: nad.UID, ResourceVersion: nad.ResourceVersion}
}

// NetworkRefused reports, as a Warning event on the NAD behind network key
// ("namespace/name"), that a change of it was refused for pods still
// attached to the old definition.
func (c *Cluster) NetworkRefused(key, msg string) {
	ns, name, ok := cutKey(key)
	if !ok {
		return
	}
	nad, err := c.nads.NetworkAttachmentDefinitions(ns).Get(name)
	if err != nil {
		return
	}
	c.warn(nadRef(nad), "BreakingChangeRefused", msg)
}

func cutKey(key string) (ns, name string, ok bool) {
	for i := 0; i < len(key); i++ {
		if key[i] == '/' {
			return key[:i], key[i+1:], true
		}
	}
	return "", "", false
}

// ResourceNameAnnotation names a NAD's device plugin resource, as Multus
// reads it.
const ResourceNameAnnotation = "k8s.v1.cni.cncf.io/resourceName"

// resourceFromAnnotation gives an SR-IOV network the NAD's resourceName
// annotation when its config names none; the two must agree when both
// are set. Other paths take no device and ignore it.
func resourceFromAnnotation(n *api.Network, nad *nadv1.NetworkAttachmentDefinition) error {
	r, ok := nad.Annotations[ResourceNameAnnotation]
	if !ok || !n.Path.IsSRIOV() {
		return nil
	}
	if !api.ValidResourceName(r) {
		return fmt.Errorf("annotation %s: %q is not an extended resource name like intel.com/sriov_netdevice: %w", ResourceNameAnnotation, r, api.ErrInvalidNetwork)
	}
	if n.SRIOV == nil {
		n.SRIOV = &api.SRIOVOptions{}
	}
	switch n.SRIOV.ResourceName {
	case "":
		n.SRIOV.ResourceName = r
	case r:
	default:
		return fmt.Errorf("annotation %s: %q differs from spec.config.sriov.resourceName %q: %w", ResourceNameAnnotation, r, n.SRIOV.ResourceName, api.ErrInvalidNetwork)
	}
	return nil
}
