package api

import (
	"encoding/json"
	"strings"
)

// PathDelegate hands the interface to another CNI plugin (DANM's
// delegation, Multus's model): the agent calls it through libcni with the
// pod's netns and interface name, in parallel with its own paths.
const PathDelegate PathKind = "delegate"

// Delegate IPAM modes.
const (
	DelegateIPAMPlugin = "plugin" // the delegate's own ipam section decides (default)
	DelegateIPAMTelcni = "telcni" // telcni's IPAM allocates; the delegate gets a static IPAM result
)

// DelegateOptions name the CNI plugin a delegate network calls.
type DelegateOptions struct {
	// Plugin is one CNI plugin configuration (a conflist's plugins entry),
	// e.g. {"type":"bridge","bridge":"br0","ipam":{...}}.
	Plugin json.RawMessage `json:"plugin,omitempty"`
	// Conflist names a conflist in the agent's CNI config directory
	// (-cni-conf-dir), by its "name", instead of Plugin.
	Conflist string `json:"conflist,omitempty"`
	// IPAM: "plugin" (the delegate's own) or "telcni" (telcni allocates
	// from the network's ipam.subnets and injects the result through the
	// static IPAM plugin).
	IPAM string `json:"ipam,omitempty"`
}

// EffectiveIPAM is the delegate's IPAM mode.
func (d *DelegateOptions) EffectiveIPAM() string {
	if d == nil || d.IPAM == "" {
		return DelegateIPAMPlugin
	}
	return d.IPAM
}

func (n *Network) validateDelegate(fe *fieldErrors, p string) {
	d, dp := n.Delegate, join(p, "delegate")
	if n.Path != PathDelegate {
		if d != nil {
			fe.add(dp, "{...}", "is not used by path %s", n.Path)
		}
		return
	}
	if len(n.Firewall) > 0 {
		fe.add(join(p, "firewall"), "[...]", "is not used by path delegate (the delegate plugin makes the interface)")
	}
	if n.PolicyRoutingTable != 0 {
		fe.add(join(p, "policyRoutingTable"), n.PolicyRoutingTable, "is not used by path delegate")
	}
	if d == nil {
		fe.add(dp, nil, "is required by path delegate (plugin or conflist)")
		return
	}
	switch {
	case len(d.Plugin) > 0 && d.Conflist != "":
		fe.add(join(dp, "conflist"), d.Conflist, "cannot be set together with plugin")
	case len(d.Plugin) == 0 && d.Conflist == "":
		fe.add(dp, nil, "needs plugin or conflist")
	case len(d.Plugin) > 0:
		var probe struct {
			Type string          `json:"type"`
			IPAM json.RawMessage `json:"ipam"`
		}
		if err := json.Unmarshal(d.Plugin, &probe); err != nil {
			fe.add(join(dp, "plugin"), string(d.Plugin), "is not a JSON object: %v", err)
		} else if probe.Type == "" || strings.ContainsAny(probe.Type, "/\\") || probe.Type == PluginTypeName {
			fe.add(join(dp, "plugin.type"), probe.Type, "must name another CNI plugin binary")
		} else if d.EffectiveIPAM() == DelegateIPAMTelcni && len(probe.IPAM) > 0 {
			fe.add(join(dp, "plugin.ipam"), string(probe.IPAM), "is set, but delegate.ipam is telcni (telcni injects the addresses)")
		}
	}
	switch d.EffectiveIPAM() {
	case DelegateIPAMPlugin:
		if len(n.IPAM.Subnets) > 0 {
			fe.add(join(p, "ipam.subnets"), "[...]", "are not used when delegate.ipam is plugin (the delegate's own IPAM decides)")
		}
	case DelegateIPAMTelcni:
		if len(n.IPAM.Subnets) == 0 {
			fe.add(join(p, "ipam.subnets"), nil, "are required when delegate.ipam is telcni")
		}
	default:
		fe.add(join(dp, "ipam"), d.IPAM, "is not plugin or telcni")
	}
}
