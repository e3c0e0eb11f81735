package api

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// SRIOVOptions are the VF settings of sriov and sriov-dpdk networks, applied
// through the PF (network.master) before the VF is handed to the pod. The
// common fields keep their meaning: VLAN is the VF's port VLAN, the
// request's MAC its administrative MAC. Every VF is reset to the defaults
// (VLAN 0, MAC cleared, spoofchk on, trust off, rates 0, link auto) when
// it is freed.
type SRIOVOptions struct {
	// VFs restricts which VFs of the PF this network may use: indexes and
	// ranges, e.g. "0-3,6". Empty: every VF.
	VFs       string `json:"vfs,omitempty"`
	VLANQoS   int    `json:"vlanQoS,omitempty"`   // 802.1p priority of the port VLAN, 0-7
	SpoofChk  *bool  `json:"spoofchk,omitempty"`  // MAC anti-spoofing; the PF's default (on) when unset
	Trust     *bool  `json:"trust,omitempty"`     // trusted VF (promiscuous, MAC changes); off when unset
	LinkState string `json:"linkState,omitempty"` // auto | enable | disable; auto when unset
	MinTxRate int    `json:"minTxRate,omitempty"` // Mbps, 0: no guarantee
	MaxTxRate int    `json:"maxTxRate,omitempty"` // Mbps, 0: no limit
	// ResourceName is the device plugin's resource whose devices are this
	// network's VFs (e.g. "intel.com/sriov_netdevice"). With it, a pod
	// gets a VF the kubelet allocated to that pod (the kubelet's pod
	// resources API), unless runtimeConfig.deviceID names one. A NAD's
	// k8s.v1.cni.cncf.io/resourceName annotation sets it too.
	ResourceName string `json:"resourceName,omitempty"`
}

// resourceNameRE is an extended resource name: a DNS subdomain, a slash
// and a name (Kubernetes requires the domain for extended resources).
var resourceNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)

// IsSRIOV reports whether the path hands SR-IOV VFs to pods.
func (p PathKind) IsSRIOV() bool { return p == PathSRIOV || p == PathSRIOVDPDK }

// ParseVFList parses a VF list such as "0-3,6" into sorted-as-written
// indexes (duplicates removed).
func ParseVFList(s string) ([]int, error) {
	var out []int
	seen := map[int]bool{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(strings.TrimSpace(lo))
		if err != nil || a < 0 {
			return nil, fmt.Errorf("%q is not a VF index or range", part)
		}
		b := a
		if isRange {
			b, err = strconv.Atoi(strings.TrimSpace(hi))
			if err != nil || b < a {
				return nil, fmt.Errorf("%q is not a VF range (low-high)", part)
			}
		}
		if b > 4095 {
			return nil, fmt.Errorf("%q goes past VF 4095", part)
		}
		for i := a; i <= b; i++ {
			if !seen[i] {
				seen[i] = true
				out = append(out, i)
			}
		}
	}
	return out, nil
}

func (n *Network) validateSRIOV(fe *fieldErrors, p string) {
	if n.Path == PathSRIOVDPDK && len(n.Firewall) > 0 {
		// The DPDK application drives the VF itself: no kernel sees its packets.
		fe.add(join(p, "firewall"), "[...]", "cannot be enforced on path %s (the VF bypasses the kernel)", n.Path)
	}
	o := n.SRIOV
	if o == nil {
		return
	}
	sp := join(p, "sriov")
	if !n.Path.IsSRIOV() {
		fe.add(sp, "{...}", "is not used by path %s", n.Path)
		return
	}
	if o.VFs != "" {
		if _, err := ParseVFList(o.VFs); err != nil {
			fe.add(join(sp, "vfs"), o.VFs, "is not a VF list like \"0-3,6\": %v", err)
		}
	}
	if o.VLANQoS < 0 || o.VLANQoS > 7 {
		fe.add(join(sp, "vlanQoS"), o.VLANQoS, "is out of range 0-7")
	} else if o.VLANQoS != 0 && n.VLAN == 0 {
		fe.add(join(sp, "vlanQoS"), o.VLANQoS, "needs vlan")
	}
	switch o.LinkState {
	case "", "auto", "enable", "disable":
	default:
		fe.add(join(sp, "linkState"), o.LinkState, "is not auto, enable or disable")
	}
	if o.MinTxRate < 0 {
		fe.add(join(sp, "minTxRate"), o.MinTxRate, "is negative")
	}
	if o.MaxTxRate < 0 {
		fe.add(join(sp, "maxTxRate"), o.MaxTxRate, "is negative")
	}
	if o.MaxTxRate > 0 && o.MinTxRate > o.MaxTxRate {
		fe.add(join(sp, "minTxRate"), o.MinTxRate, "is above maxTxRate %d", o.MaxTxRate)
	}
	if o.ResourceName != "" && !ValidResourceName(o.ResourceName) {
		fe.add(join(sp, "resourceName"), o.ResourceName, "is not an extended resource name like intel.com/sriov_netdevice")
	}
}

// ValidResourceName reports whether s is an extended resource name.
func ValidResourceName(s string) bool { return len(s) <= 253 && resourceNameRE.MatchString(s) }
