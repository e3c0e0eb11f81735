package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// NetworksAnnotation is the NPWG pod annotation that selects networks.
const NetworksAnnotation = "k8s.v1.cni.cncf.io/networks"

// NetworkStatusAnnotation is the NPWG pod annotation telcni reports into.
const NetworkStatusAnnotation = "k8s.v1.cni.cncf.io/network-status"

// NetworkSelection is one NPWG network-selection element: a request to
// attach the pod to one network.
type NetworkSelection struct {
	Name         string         `json:"name"`
	Namespace    string         `json:"namespace,omitempty"`
	Interface    string         `json:"interface,omitempty"`
	IPs          []string       `json:"ips,omitempty"`
	MAC          string         `json:"mac,omitempty"`
	DefaultRoute []string       `json:"default-route,omitempty"`
	CNIArgs      map[string]any `json:"cni-args,omitempty"`
}

// selectionFields are the element keys telcni honours. The spec's other
// keys are refused by name: a request telcni cannot honour must fail the
// attachment, not be silently dropped (see ANCHORS: Multus).
var (
	selectionFields   = []string{"name", "namespace", "interface", "ips", "mac", "default-route", "cni-args"}
	unsupportedFields = []string{"portMappings", "bandwidth", "infiniband-guid", "ipam-claim-reference"}
)

// ParseSelections parses the value of the networks annotation, in the JSON
// list form or the short form ("a,ns/b,c@fh0"). Elements without a
// namespace get podNamespace. Every problem is reported, each naming its
// field path, e.g. `networks[1].ips[0]: "10.0.0.300/24" is not an IP prefix`.
func ParseSelections(annotation, podNamespace string) ([]NetworkSelection, error) {
	var fe fieldErrors
	s := strings.TrimSpace(annotation)
	var sels []NetworkSelection
	switch {
	case s == "":
		return nil, nil
	case strings.HasPrefix(s, "["):
		sels = parseSelectionJSON(&fe, []byte(s))
	case strings.HasPrefix(s, "{"):
		fe.add("networks", s, "is a JSON object; the annotation takes a JSON list ([{...}]) or the short form (net-a,ns/net-b@if1)")
	default:
		sels = parseSelectionShort(&fe, s)
	}
	for i := range sels {
		if sels[i].Namespace == "" {
			sels[i].Namespace = podNamespace
		}
		sels[i].validate(&fe, fmt.Sprintf("networks[%d]", i))
	}
	checkUniqueInterfaces(&fe, sels)
	if err := fe.err(); err != nil {
		return nil, err
	}
	return sels, nil
}

func parseSelectionJSON(fe *fieldErrors, data []byte) []NetworkSelection {
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		fe.add("networks", string(data), "is not a JSON list of network-selection objects: %v", err)
		return nil
	}
	out := make([]NetworkSelection, 0, len(raw))
	for i, elem := range raw {
		p := fmt.Sprintf("networks[%d]", i)
		keys := make([]string, 0, len(elem))
		for k := range elem {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			switch {
			case slices.Contains(unsupportedFields, k):
				fe.add(join(p, k), string(elem[k]), "is not supported by telcni")
			case !slices.Contains(selectionFields, k):
				fe.add(join(p, k), nil, "is not a network-selection field (known: %s)", strings.Join(selectionFields, ", "))
			}
		}
		var sel NetworkSelection
		for _, k := range keys {
			if !slices.Contains(selectionFields, k) {
				continue
			}
			if err := decodeSelectionField(&sel, k, elem[k]); err != nil {
				fe.add(join(p, k), string(elem[k]), "has the wrong type: %v", err)
			}
		}
		out = append(out, sel)
	}
	return out
}

func decodeSelectionField(sel *NetworkSelection, key string, v json.RawMessage) error {
	var dst any
	switch key {
	case "name":
		dst = &sel.Name
	case "namespace":
		dst = &sel.Namespace
	case "interface":
		dst = &sel.Interface
	case "ips":
		dst = &sel.IPs
	case "mac":
		dst = &sel.MAC
	case "default-route":
		dst = &sel.DefaultRoute
	case "cni-args":
		dst = &sel.CNIArgs
	}
	dec := json.NewDecoder(bytes.NewReader(v))
	return dec.Decode(dst)
}

func parseSelectionShort(fe *fieldErrors, s string) []NetworkSelection {
	parts := strings.Split(s, ",")
	out := make([]NetworkSelection, 0, len(parts))
	for i, part := range parts {
		p := fmt.Sprintf("networks[%d]", i)
		part = strings.TrimSpace(part)
		var sel NetworkSelection
		if at := strings.LastIndex(part, "@"); at >= 0 {
			sel.Interface = part[at+1:]
			if sel.Interface == "" {
				fe.add(join(p, "interface"), part, "is empty after @")
			}
			part = part[:at]
		}
		if slash := strings.Index(part, "/"); slash >= 0 {
			sel.Namespace = part[:slash]
			if sel.Namespace == "" {
				fe.add(join(p, "namespace"), part, "is empty before /")
			}
			part = part[slash+1:]
		}
		sel.Name = part
		out = append(out, sel)
	}
	return out
}

func (s *NetworkSelection) validate(fe *fieldErrors, p string) {
	switch {
	case s.Name == "":
		fe.add(join(p, "name"), nil, "is required")
	case !ValidName(s.Name):
		fe.add(join(p, "name"), s.Name, "is not a valid network name")
	}
	if s.Namespace != "" && !ValidName(s.Namespace) {
		fe.add(join(p, "namespace"), s.Namespace, "is not a valid namespace name")
	}
	if s.Interface != "" && !ValidIfName(s.Interface) {
		fe.add(join(p, "interface"), s.Interface, "is not a valid interface name (1-15 characters, no '/', ':' or spaces)")
	}
	ValidateIPs(fe, join(p, "ips"), s.IPs)
	if s.MAC != "" {
		if err := ValidateMAC(s.MAC); err != nil {
			fe.add(join(p, "mac"), s.MAC, "%v", err)
		}
	}
	for i, gw := range s.DefaultRoute {
		if _, err := netip.ParseAddr(gw); err != nil {
			fe.add(fmt.Sprintf("%s[%d]", join(p, "default-route"), i), gw, "is not an IP address")
		}
	}
}

// ValidateIPs checks requested static addresses: each an IP prefix, at most
// one per IP family.
func ValidateIPs(fe *fieldErrors, p string, ips []string) {
	var seen [2]bool
	for i, ip := range ips {
		ep := fmt.Sprintf("%s[%d]", p, i)
		pfx, err := netip.ParsePrefix(ip)
		if err != nil {
			fe.add(ep, ip, "is not an IP prefix")
			continue
		}
		fam := 0
		if pfx.Addr().Is6() {
			fam = 1
		}
		if seen[fam] {
			fe.add(ep, ip, "is a second address of the same IP family on one interface")
		}
		seen[fam] = true
	}
}

// ParseIPs validates requested static addresses outside a selection (the
// runtimeConfig "ips" capability), naming the field p.
func ParseIPs(p string, ips []string) ([]netip.Prefix, error) {
	var fe fieldErrors
	ValidateIPs(&fe, p, ips)
	if err := fe.err(); err != nil {
		return nil, err
	}
	out := make([]netip.Prefix, len(ips))
	for i, ip := range ips {
		out[i] = netip.MustParsePrefix(ip)
	}
	return out, nil
}

// ValidateMAC checks a requested MAC: a unicast Ethernet address.
func ValidateMAC(s string) error {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return fmt.Errorf("is not an Ethernet MAC address")
	}
	if hw[0]&1 == 1 {
		return fmt.Errorf("is a multicast MAC address")
	}
	return nil
}

func checkUniqueInterfaces(fe *fieldErrors, sels []NetworkSelection) {
	seen := map[string]int{}
	for i, s := range sels {
		if s.Interface == "" {
			continue
		}
		if j, dup := seen[s.Interface]; dup {
			fe.add(fmt.Sprintf("networks[%d].interface", i), s.Interface, "is already used by networks[%d]", j)
			continue
		}
		seen[s.Interface] = i
	}
}
