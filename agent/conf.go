package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/cni"
)

// PodAnnotationsKey is the runtimeConfig key under which CRI-O (and
// containerd with the pod-annotations capability) pass the pod's
// annotations to CNI plugins.
const PodAnnotationsKey = "io.kubernetes.cri.pod-annotations"

// netConf is the agent's view of the stdin config.
type netConf struct {
	CNIVersion string `json:"cniVersion"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	// Network names a network of the agent's source: attachment mode.
	Network   string `json:"network,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	// Path set means the config is itself a network definition (a NAD's
	// spec.config delegated by Multus, or a conflist entry): attachment mode.
	Path api.PathKind `json:"path,omitempty"`
	// DefaultNetwork, in pod mode, is the network of CNI_IFNAME (eth0).
	DefaultNetwork string `json:"defaultNetwork,omitempty"`
	// DefaultRoute, in attachment mode, puts the default route on this
	// interface.
	DefaultRoute  bool `json:"defaultRoute,omitempty"`
	RuntimeConfig struct {
		IPs []string `json:"ips,omitempty"`
		MAC string   `json:"mac,omitempty"`
		// DeviceID is the device the device plugin allocated (an SR-IOV
		// VF's PCI address), as Multus passes it with the deviceID
		// capability.
		DeviceID       string            `json:"deviceID,omitempty"`
		PodAnnotations map[string]string `json:"io.kubernetes.cri.pod-annotations,omitempty"`
	} `json:"runtimeConfig"`
	ValidAttachments []struct {
		ContainerID string `json:"containerID"`
		IfName      string `json:"ifname"`
	} `json:"cni.dev/valid-attachments,omitempty"`
}

// pluginKeys are stdin keys that belong to the CNI call, not to an inline
// network definition.
var pluginKeys = []string{"agentSocket", "runtimeConfig", "capabilities", "prevResult", "args",
	"cni.dev/valid-attachments", "defaultRoute", "dns", "network", "defaultNetwork"}

func parseConf(raw json.RawMessage) (*netConf, error) {
	var c netConf
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, attach.Errorf(attach.CodeDecodeFailure, "decode network config: %v", err)
	}
	if c.Type != "" && c.Type != api.PluginTypeName {
		return nil, attach.Errorf(attach.CodeInvalidConfig, "type: %q is not %q", c.Type, api.PluginTypeName)
	}
	return &c, nil
}

// inlineNetwork parses the stdin config as a network definition.
func inlineNetwork(raw json.RawMessage) (*api.Network, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, attach.Errorf(attach.CodeDecodeFailure, "decode network config: %v", err)
	}
	for _, k := range pluginKeys {
		delete(m, k)
	}
	doc, _ := json.Marshal(m)
	n, err := api.ParseNetwork(doc)
	if err != nil {
		return nil, attach.Errorf(attach.CodeInvalidConfig, "network config %v", err)
	}
	return n, nil
}

// ifacePlan is one interface an ADD will make.
type ifacePlan struct {
	network      *api.Network
	ifName       string
	static       []netip.Prefix
	mac          string
	deviceID     string
	defaultRoute bool
	gateways     []netip.Addr
}

type plan struct {
	conf   *netConf
	key    string
	mode   string
	pod    attach.Pod
	ifaces []ifacePlan
}

// parseCNIArgs reads the K8S_POD_* keys of CNI_ARGS.
func parseCNIArgs(args string) (attach.Pod, error) {
	var pod attach.Pod
	if args == "" {
		return pod, nil
	}
	for _, kv := range strings.Split(args, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return pod, attach.Errorf(attach.CodeInvalidEnv, "CNI_ARGS: %q is not KEY=VALUE", kv)
		}
		switch k {
		case "K8S_POD_NAMESPACE":
			pod.Namespace = v
		case "K8S_POD_NAME":
			pod.Name = v
		case "K8S_POD_UID":
			pod.UID = v
		}
	}
	return pod, nil
}

// resolve turns an ADD call into the list of interfaces to make.
func (a *Agent) resolve(ctx context.Context, call *cni.Call, c *netConf) (*plan, error) {
	pod, err := parseCNIArgs(call.Args)
	if err != nil {
		return nil, err
	}
	p := &plan{conf: c, key: recordKey(call.ContainerID, call.IfName), pod: pod}
	podNS := pod.Namespace
	if podNS == "" {
		podNS = api.DefaultNetNS
	}
	switch {
	case c.Path != "":
		var n *api.Network
		if n, err = inlineNetwork(call.Config); err != nil {
			return nil, err
		}
		p.mode = ModeAttachment
		err = a.planAttachment(p, n, call.IfName, call.Args)
	case c.Network != "":
		ns := c.Namespace
		if ns == "" {
			ns = podNS
		}
		var n *api.Network
		if n, err = a.lookup(ctx, "network", podNS, ns, c.Network); err != nil {
			return nil, err
		}
		p.mode = ModeAttachment
		err = a.planAttachment(p, n, call.IfName, call.Args)
	default:
		p.mode = ModePod
		err = a.planPod(ctx, p, call.IfName, podNS)
	}
	if err != nil {
		return nil, err
	}
	if err := a.assignDevices(ctx, p, call.ContainerID); err != nil {
		return nil, err
	}
	return p, a.checkUnchanged(p)
}

// lookup finds the network a pod in podNS asked for as namespace/name.
func (a *Agent) lookup(ctx context.Context, field, podNS, namespace, name string) (*api.Network, error) {
	if sc, ok := a.networks.(api.NamespaceScoper); ok && !sc.Visible(podNS, namespace) {
		return nil, attach.Errorf(attach.CodeInvalidConfig, "%s: network %s/%s is in namespace %q, which pods of namespace %q may not use (not their own, not shared)",
			field, namespace, name, namespace, podNS)
	}
	n, err := a.networks.Network(ctx, namespace, name)
	if errors.Is(err, api.ErrNetworkNotFound) {
		return nil, attach.Errorf(attach.CodeInvalidConfig, "%s: %q is not a network known in namespace %q", field, name, namespace)
	}
	var ve *api.ValidationError
	if errors.Is(err, api.ErrInvalidNetwork) || errors.As(err, &ve) {
		return nil, attach.Errorf(attach.CodeInvalidConfig, "%s: %v", field, err)
	}
	if err != nil {
		return nil, attach.Errorf(attach.CodeIOFailure, "%s: look up network %q: %v", field, name, err)
	}
	return n, nil
}

func (a *Agent) planAttachment(p *plan, n *api.Network, ifName, cniArgs string) error {
	static, err := api.ParseIPs("runtimeConfig.ips", p.conf.RuntimeConfig.IPs)
	if err != nil {
		return attach.WithCode(attach.CodeInvalidConfig, err)
	}
	mac, macField := p.conf.RuntimeConfig.MAC, "runtimeConfig.mac"
	// podman's CNI backend (containers/common) passes --ip and --mac-address
	// as CNI_ARGS IP= and MAC= (the static IPAM convention), not as the ips
	// and mac capabilities; the capabilities win when both are given.
	argIPs, argMAC := staticCNIArgs(cniArgs)
	if len(static) == 0 && len(argIPs) > 0 {
		if static, err = argPrefixes(n, argIPs); err != nil {
			return err
		}
	}
	if mac == "" && argMAC != "" {
		mac, macField = argMAC, "CNI_ARGS MAC"
	}
	if mac != "" {
		if err := api.ValidateMAC(mac); err != nil {
			return attach.Errorf(attach.CodeInvalidConfig, "%s: %q %v", macField, mac, err)
		}
	}
	dev := p.conf.RuntimeConfig.DeviceID
	if dev != "" && !n.Path.IsSRIOV() {
		return attach.Errorf(attach.CodeInvalidConfig, "runtimeConfig.deviceID: %q is given but network %s (path %s) takes no device", dev, n.Key(), n.Path)
	}
	p.ifaces = []ifacePlan{{network: n, ifName: ifName, static: static, mac: mac, deviceID: dev, defaultRoute: p.conf.DefaultRoute}}
	return nil
}

func (a *Agent) planPod(ctx context.Context, p *plan, cniIfName, podNS string) error {
	annotations := p.conf.RuntimeConfig.PodAnnotations
	if annotations == nil && a.pods != nil && p.pod.Name != "" {
		// The runtime passed no annotations: read the pod from the cluster.
		var err error
		if annotations, err = a.pods.PodAnnotations(ctx, p.pod); err != nil {
			return attach.Errorf(attach.CodeTryAgainLater, "pod mode: read pod %s/%s: %v", podNS, p.pod.Name, err)
		}
	}
	annotation := annotations[api.NetworksAnnotation]
	sels, err := api.ParseSelections(annotation, podNS)
	if err != nil {
		return attach.WithCode(attach.CodeInvalidConfig, fmt.Errorf("pod annotation %s: %w", api.NetworksAnnotation, err))
	}
	if p.conf.DefaultNetwork == "" && len(sels) == 0 {
		return attach.Errorf(attach.CodeInvalidConfig,
			"pod mode: the pod asks for no network (no %s annotation in runtimeConfig %q) and the config has no defaultNetwork",
			api.NetworksAnnotation, PodAnnotationsKey)
	}
	used := map[string]bool{}
	explicitDefault := false
	defaultBy := map[bool]int{} // IP family (is IPv4) -> selection index
	for i, s := range sels {
		used[s.Interface] = true
		explicitDefault = explicitDefault || len(s.DefaultRoute) > 0
		for j, gw := range s.DefaultRoute {
			fam := netip.MustParseAddr(gw).Is4()
			if prev, dup := defaultBy[fam]; dup && prev != i {
				return attach.Errorf(attach.CodeInvalidConfig, "pod annotation %s: networks[%d].default-route[%d]: %q is a second default route of its IP family (networks[%d] has one)",
					api.NetworksAnnotation, i, j, gw, prev)
			}
			defaultBy[fam] = i
		}
	}
	if p.conf.DefaultNetwork != "" {
		if used[cniIfName] {
			return attach.Errorf(attach.CodeInvalidConfig, "pod annotation %s: interface %q is the pod's primary interface (CNI_IFNAME)", api.NetworksAnnotation, cniIfName)
		}
		n, err := a.lookup(ctx, "defaultNetwork", podNS, podNS, p.conf.DefaultNetwork)
		if err != nil {
			return err
		}
		p.ifaces = append(p.ifaces, ifacePlan{network: n, ifName: cniIfName, defaultRoute: !explicitDefault})
		used[cniIfName] = true
	}
	next := 1
	for i, s := range sels {
		n, err := a.lookup(ctx, fmt.Sprintf("networks[%d].name", i), podNS, s.Namespace, s.Name)
		if err != nil {
			return err
		}
		ifName := s.Interface
		for ifName == "" {
			if cand := fmt.Sprintf("net%d", next); !used[cand] {
				ifName = cand
			}
			next++
		}
		used[ifName] = true
		static, _ := api.ParseIPs("", s.IPs) // validated by ParseSelections
		ip := ifacePlan{network: n, ifName: ifName, static: static, mac: s.MAC, defaultRoute: len(s.DefaultRoute) > 0}
		for _, gw := range s.DefaultRoute {
			ip.gateways = append(ip.gateways, netip.MustParseAddr(gw))
		}
		p.ifaces = append(p.ifaces, ip)
	}
	return nil
}

// staticCNIArgs reads the IP (comma-separated addresses or prefixes) and
// MAC keys of CNI_ARGS.
func staticCNIArgs(args string) (ips []string, mac string) {
	for _, kv := range strings.Split(args, ";") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "IP":
			for _, ip := range strings.Split(v, ",") {
				if ip != "" {
					ips = append(ips, ip)
				}
			}
		case "MAC":
			mac = v
		}
	}
	return ips, mac
}

// argPrefixes gives bare CNI_ARGS addresses the prefix length of the
// network's subnet that holds them.
func argPrefixes(n *api.Network, ips []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(ips))
	for _, s := range ips {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p)
			continue
		}
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return nil, attach.Errorf(attach.CodeInvalidConfig, "CNI_ARGS IP: %q is not an IP address", s)
		}
		found := false
		for _, sub := range n.IPAM.Subnets {
			if c, err := netip.ParsePrefix(sub.CIDR); err == nil && c.Contains(ip) {
				out, found = append(out, netip.PrefixFrom(ip, c.Bits())), true
				break
			}
		}
		if !found {
			return nil, attach.Errorf(attach.CodeInvalidConfig, "CNI_ARGS IP: %q is in no subnet of network %s", s, n.Name)
		}
	}
	return out, nil
}
