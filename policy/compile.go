package policy

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Pod is what a policy needs of a pod: where it is, its labels and its
// addresses on each network.
type Pod struct {
	Namespace string
	Name      string
	UID       string
	Labels    map[string]string
	// Addrs holds the pod's addresses per network key ("namespace/name",
	// or "name" for a cluster-wide network: as network-status names it).
	Addrs map[string][]netip.Addr
}

// Input is the world a compilation sees.
type Input struct {
	Policies []*MultiNetworkPolicy
	Pods     []*Pod
	// Namespaces holds each namespace's labels.
	Namespaces map[string]map[string]string
	// NetworkKey resolves a policy-for entry ("name" or "namespace/name")
	// written in a policy of namespace ns to a network key. nil: "name" is
	// ns + "/name".
	NetworkKey func(ns, ref string) string
}

// Target is one pod interface: the pod it belongs to and its network.
type Target struct {
	Pod     *Pod
	Network string
	// Ports are the target pod's container ports: an ingress rule's named
	// port is the port of that name (and protocol) on the pod it protects.
	Ports []ContainerPort
}

// ContainerPort is one named port of a pod's containers.
type ContainerPort struct {
	Name     string
	Protocol string // "tcp", "udp" or "sctp"
	Port     uint16
}

// Rule allows traffic with one peer prefix (the source for ingress, the
// destination for egress), protocol and destination port range.
type Rule struct {
	Peer     netip.Prefix // !IsValid(): any address
	Protocol string       // "tcp", "udp", "sctp"; "": any protocol
	Port     uint16       // first port; 0 with EndPort 0: any port
	EndPort  uint16       // last port (== Port for one port)
}

func (r Rule) String() string {
	peer := "any"
	if r.Peer.IsValid() {
		peer = r.Peer.String()
	}
	proto := r.Protocol
	if proto == "" {
		proto = "any"
	}
	switch {
	case r.Port == 0 && r.EndPort == 0:
		return peer + " " + proto
	case r.Port == r.EndPort:
		return fmt.Sprintf("%s %s/%d", peer, proto, r.Port)
	default:
		return fmt.Sprintf("%s %s/%d-%d", peer, proto, r.Port, r.EndPort)
	}
}

// Direction is the verdict for one direction of an interface: not
// isolated, everything passes; isolated, only what Allow lists.
type Direction struct {
	Isolated bool
	Allow    []Rule // sorted, without duplicates
}

// Rules is the compiled policy of one interface.
type Rules struct {
	Ingress Direction
	Egress  Direction
}

// Equal reports whether r and o enforce the same thing.
func (r Rules) Equal(o Rules) bool {
	return r.Ingress.Isolated == o.Ingress.Isolated && r.Egress.Isolated == o.Egress.Isolated &&
		slices.Equal(r.Ingress.Allow, o.Ingress.Allow) && slices.Equal(r.Egress.Allow, o.Egress.Allow)
}

// Open reports whether r isolates nothing (no policy selects the interface).
func (r Rules) Open() bool { return !r.Ingress.Isolated && !r.Egress.Isolated }

// Index is an Input prepared for compiling many targets: selectors parsed
// and pods grouped by namespace once.
type Index struct {
	in       *Input
	policies []*compiled
	byNS     map[string][]*Pod
	named    bool // an ingress rule names a port (Compile needs Target.Ports)
	// Notes are the parts of the input that were ignored, each with why
	// (named ports, invalid selectors, policies without policy-for).
	Notes []string
}

type compiled struct {
	p        *MultiNetworkPolicy
	name     string
	selector labels.Selector
	networks []string
	ingress  bool
	egress   bool
}

// NewIndex prepares in for Compile.
func NewIndex(in *Input) *Index {
	x := &Index{in: in, byNS: map[string][]*Pod{}}
	for _, p := range in.Pods {
		x.byNS[p.Namespace] = append(x.byNS[p.Namespace], p)
	}
	for _, p := range in.Policies {
		c := &compiled{p: p, name: p.Namespace + "/" + p.Name}
		refs := strings.TrimSpace(p.Annotations[PolicyForAnnotation])
		if refs == "" {
			x.note("policy %s has no %s annotation: it applies to no network", c.name, PolicyForAnnotation)
			continue
		}
		for _, ref := range strings.Split(refs, ",") {
			if ref = strings.TrimSpace(ref); ref != "" {
				c.networks = append(c.networks, x.networkKey(p.Namespace, ref))
			}
		}
		sel, err := metav1.LabelSelectorAsSelector(&p.Spec.PodSelector)
		if err != nil {
			x.note("policy %s: podSelector: %v: the policy is ignored", c.name, err)
			continue
		}
		c.selector = sel
		c.ingress, c.egress = policyTypes(&p.Spec)
		for _, r := range p.Spec.Ingress {
			for _, pp := range r.Ports {
				x.named = x.named || (pp.Port != nil && pp.Port.Type == intstr.String)
			}
		}
		x.policies = append(x.policies, c)
	}
	// Policies in a stable order: the result must not depend on the order
	// the informer listed them in (it does not, being a sorted union, but
	// notes should not reorder either).
	slices.SortFunc(x.policies, func(a, b *compiled) int { return strings.Compare(a.name, b.name) })
	return x
}

// NamedPorts reports whether an ingress rule of some policy names a port:
// only then does Compile need the target's container ports.
func (x *Index) NamedPorts() bool { return x.named }

func (x *Index) note(format string, args ...any) {
	x.Notes = append(x.Notes, fmt.Sprintf(format, args...))
}

func (x *Index) networkKey(ns, ref string) string {
	if x.in.NetworkKey != nil {
		return x.in.NetworkKey(ns, ref)
	}
	if strings.Contains(ref, "/") {
		return ref
	}
	return ns + "/" + ref
}

// policyTypes is NetworkPolicy's defaulting: without policyTypes a policy
// covers ingress, and egress when it has egress rules.
func policyTypes(s *networkingv1.NetworkPolicySpec) (ingress, egress bool) {
	if len(s.PolicyTypes) == 0 {
		return true, len(s.Egress) > 0
	}
	for _, t := range s.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			ingress = true
		case networkingv1.PolicyTypeEgress:
			egress = true
		}
	}
	return ingress, egress
}

// Compile returns the rules of target and the names of the policies that
// select it (sorted). Notes about ignored parts are appended to x.Notes.
func (x *Index) Compile(t Target) (Rules, []string) {
	var r Rules
	var names []string
	for _, c := range x.policies {
		if c.p.Namespace != t.Pod.Namespace || !slices.Contains(c.networks, t.Network) || !c.selector.Matches(labels.Set(t.Pod.Labels)) {
			continue
		}
		names = append(names, c.name)
		if c.ingress {
			r.Ingress.Isolated = true
			for i, rule := range c.p.Spec.Ingress {
				r.Ingress.Allow = append(r.Ingress.Allow, x.rules(c, fmt.Sprintf("ingress[%d]", i), t, true, rule.From, rule.Ports)...)
			}
		}
		if c.egress {
			r.Egress.Isolated = true
			for i, rule := range c.p.Spec.Egress {
				r.Egress.Allow = append(r.Egress.Allow, x.rules(c, fmt.Sprintf("egress[%d]", i), t, false, rule.To, rule.Ports)...)
			}
		}
	}
	r.Ingress.Allow = normalize(r.Ingress.Allow)
	r.Egress.Allow = normalize(r.Egress.Allow)
	return r, names
}

// rules is one NetworkPolicy rule: every peer × every port. No peers
// means any peer, no ports any port; peers that resolve to no address, or
// ports all ignored, allow nothing. A named port of an ingress rule is the
// target's port of that name; on egress it would be each peer's, whose
// container ports are not known here: ignored.
func (x *Index) rules(c *compiled, where string, t Target, ingress bool, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort) []Rule {
	network := t.Network
	prefixes := []netip.Prefix{{}}
	if len(peers) > 0 {
		prefixes = nil
		for j, peer := range peers {
			prefixes = append(prefixes, x.peer(c, fmt.Sprintf("%s.peers[%d]", where, j), network, peer)...)
		}
	}
	type portRange struct {
		proto      string
		first, end uint16
	}
	ranges := []portRange{{}}
	if len(ports) > 0 {
		ranges = nil
		for j, p := range ports {
			proto, first, end, err := port(p)
			if err == nil && p.Port != nil && p.Port.Type == intstr.String {
				first, end, err = namedPort(t, ingress, proto, p.Port.StrVal)
			}
			if err != nil {
				x.note("policy %s %s.ports[%d]: %v: that port is ignored (allows nothing)", c.name, where, j, err)
				continue
			}
			ranges = append(ranges, portRange{proto, first, end})
		}
	}
	out := make([]Rule, 0, len(prefixes)*len(ranges))
	for _, pfx := range prefixes {
		for _, pr := range ranges {
			out = append(out, Rule{Peer: pfx, Protocol: pr.proto, Port: pr.first, EndPort: pr.end})
		}
	}
	return out
}

// peer resolves one peer to prefixes: an ipBlock minus its exceptions, or
// the addresses on network of the pods its selectors pick.
func (x *Index) peer(c *compiled, where, network string, p networkingv1.NetworkPolicyPeer) []netip.Prefix {
	if p.IPBlock != nil {
		cidr, err := netip.ParsePrefix(p.IPBlock.CIDR)
		if err != nil {
			x.note("policy %s %s: ipBlock cidr: %v: peer ignored", c.name, where, err)
			return nil
		}
		out := []netip.Prefix{cidr.Masked()}
		for _, e := range p.IPBlock.Except {
			ex, err := netip.ParsePrefix(e)
			if err != nil {
				x.note("policy %s %s: ipBlock except %q: %v: peer ignored", c.name, where, e, err)
				return nil
			}
			out = subtract(out, ex.Masked())
		}
		return out
	}
	if p.PodSelector == nil && p.NamespaceSelector == nil {
		return nil // an empty peer is invalid in NetworkPolicy
	}
	podSel := labels.Everything()
	if p.PodSelector != nil {
		s, err := metav1.LabelSelectorAsSelector(p.PodSelector)
		if err != nil {
			x.note("policy %s %s: podSelector: %v: peer ignored", c.name, where, err)
			return nil
		}
		podSel = s
	}
	namespaces := []string{c.p.Namespace}
	if p.NamespaceSelector != nil {
		nsSel, err := metav1.LabelSelectorAsSelector(p.NamespaceSelector)
		if err != nil {
			x.note("policy %s %s: namespaceSelector: %v: peer ignored", c.name, where, err)
			return nil
		}
		namespaces = namespaces[:0]
		for ns, l := range x.in.Namespaces {
			if nsSel.Matches(labels.Set(l)) {
				namespaces = append(namespaces, ns)
			}
		}
	}
	var out []netip.Prefix
	for _, ns := range namespaces {
		for _, pod := range x.byNS[ns] {
			if !podSel.Matches(labels.Set(pod.Labels)) {
				continue
			}
			for _, a := range pod.Addrs[network] {
				out = append(out, netip.PrefixFrom(a, a.BitLen()))
			}
		}
	}
	return out
}

// namedPort resolves an ingress rule's named port on the target pod.
func namedPort(t Target, ingress bool, proto, name string) (first, end uint16, err error) {
	if !ingress {
		return 0, 0, fmt.Errorf("named port %q on egress (each peer's container port) is not supported", name)
	}
	for _, cp := range t.Ports {
		if cp.Name == name && cp.Protocol == proto {
			return cp.Port, cp.Port, nil
		}
	}
	return 0, 0, fmt.Errorf("the pod has no %s container port named %q", strings.ToUpper(proto), name)
}

// port turns a NetworkPolicyPort into protocol and range; a named port
// gives its protocol only (namedPort resolves it).
func port(p networkingv1.NetworkPolicyPort) (proto string, first, end uint16, err error) {
	proto = "tcp"
	if p.Protocol != nil {
		switch *p.Protocol {
		case corev1.ProtocolTCP:
		case corev1.ProtocolUDP:
			proto = "udp"
		case corev1.ProtocolSCTP:
			proto = "sctp"
		default:
			return "", 0, 0, fmt.Errorf("protocol %q is not TCP, UDP or SCTP", *p.Protocol)
		}
	}
	if p.Port == nil {
		if p.EndPort != nil {
			return "", 0, 0, fmt.Errorf("endPort without port")
		}
		return proto, 0, 0, nil
	}
	if p.Port.Type == intstr.String {
		if p.EndPort != nil {
			return "", 0, 0, fmt.Errorf("endPort with the named port %q", p.Port.StrVal)
		}
		return proto, 0, 0, nil // namedPort resolves it
	}
	n := p.Port.IntVal
	if n < 1 || n > 65535 {
		return "", 0, 0, fmt.Errorf("port %d out of range", n)
	}
	e := n
	if p.EndPort != nil {
		e = *p.EndPort
		if e < n || e > 65535 {
			return "", 0, 0, fmt.Errorf("endPort %d before port %d or out of range", e, n)
		}
	}
	return proto, uint16(n), uint16(e), nil
}

// normalize sorts and deduplicates rules; one rule allowing everything
// stands for all of them.
func normalize(rules []Rule) []Rule {
	for _, r := range rules {
		if r == (Rule{}) {
			return []Rule{{}}
		}
	}
	slices.SortFunc(rules, compareRules)
	return slices.Compact(rules)
}

func compareRules(a, b Rule) int {
	if c := cmp.Compare(boolInt(a.Peer.IsValid()), boolInt(b.Peer.IsValid())); c != 0 {
		return c
	}
	if c := a.Peer.Addr().Compare(b.Peer.Addr()); c != 0 {
		return c
	}
	return cmp.Or(cmp.Compare(a.Peer.Bits(), b.Peer.Bits()), strings.Compare(a.Protocol, b.Protocol),
		cmp.Compare(a.Port, b.Port), cmp.Compare(a.EndPort, b.EndPort))
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
