// Package attach is the contract between the agent and the paths that make
// pod interfaces (kernelpath, sriov, vppagent). The agent decides — it
// resolves the network, allocates addresses, keeps records — and a Path
// only builds, checks and removes one interface.
package attach

import (
	"context"
	"net/netip"

	"github.com/telcni/telcni/api"
)

// Path makes pod interfaces for the networks of one or more PathKinds.
//
// Attach builds one interface and, when it fails, undoes whatever it did
// before returning. Detach removes an interface from its record; it is
// idempotent and succeeds when the interface or the pod's netns is already
// gone, so that DEL always frees what is recorded. Check reports the first
// difference between the record and what exists.
type Path interface {
	Attach(ctx context.Context, req *Request) (*Interface, error)
	Detach(ctx context.Context, rec *Record) error
	Check(ctx context.Context, rec *Record) error
}

// Pod names the pod an interface belongs to.
type Pod struct {
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	UID       string `json:"uid,omitempty"`
}

// IPConfig is one address assigned to an interface.
type IPConfig struct {
	Address netip.Prefix `json:"address"`          // the pod's address with the subnet's prefix length
	Gateway netip.Addr   `json:"gateway,omitzero"` // the subnet's gateway, if any
	// Static: the pod asked for this address (in a cluster it is reserved
	// cluster-wide, and DEL frees the reservation).
	Static bool `json:"static,omitempty"`
}

// Route is a route to install for an interface.
type Route struct {
	Dst netip.Prefix `json:"dst"`
	GW  netip.Addr   `json:"gw,omitzero"`
}

// Request asks a Path for one interface.
type Request struct {
	ContainerID string       `json:"containerID"`
	Netns       string       `json:"netns"`  // path of the pod's network namespace
	IfName      string       `json:"ifName"` // name inside the pod
	Pod         Pod          `json:"pod"`
	Network     *api.Network `json:"network"`
	IPs         []IPConfig   `json:"ips,omitempty"`
	MAC         string       `json:"mac,omitempty"` // requested MAC, "" for the path's default
	// DeviceID is the device a device plugin allocated for this interface
	// (an SR-IOV VF's PCI address): the path uses exactly that one.
	DeviceID string  `json:"deviceID,omitempty"`
	Routes   []Route `json:"routes,omitempty"`
	// DefaultRoute asks for default routes via this interface's gateways
	// (or via DefaultGateways when the pod named them).
	DefaultRoute    bool         `json:"defaultRoute,omitempty"`
	DefaultGateways []netip.Addr `json:"defaultGateways,omitempty"`
}

// Gateways are the gateways of the interface's default routes: the pod's
// chosen ones, or else its subnets' gateways, one per family.
func (r *Request) Gateways() []netip.Addr {
	if len(r.DefaultGateways) > 0 {
		return r.DefaultGateways
	}
	var out []netip.Addr
	for _, ip := range r.IPs {
		if ip.Gateway.IsValid() {
			out = append(out, ip.Gateway)
		}
	}
	return out
}

// Interface is what a Path made.
type Interface struct {
	Name       string          `json:"name"`
	MAC        string          `json:"mac,omitempty"`
	Sandbox    string          `json:"sandbox,omitempty"` // netns path; "" for host-side interfaces (memif, vhost-user)
	MTU        int             `json:"mtu,omitempty"`
	DeviceInfo *api.DeviceInfo `json:"deviceInfo,omitempty"`
	// IPs are addresses the path itself assigned (a delegate plugin's own
	// IPAM), reported beside the request's.
	IPs []IPConfig `json:"ips,omitempty"`
	// State is the path's own bookkeeping (VPP sw_if_index, VF PCI
	// address, host sub-interface, ...), persisted with the record so that
	// Detach and Check work after an agent restart.
	State map[string]string `json:"state,omitempty"`
}

// Record is the persisted account of one attached interface: the request
// that made it and what was made.
type Record struct {
	Request
	Interface Interface `json:"interface"`
}

// HostLinkSyncer is implemented by paths that keep node-level links for
// networks (the host VLAN and VXLAN links of kernelpath). want returns every
// network whose host link must exist; the path creates what is missing and
// removes what it made that no network wants.
type HostLinkSyncer interface {
	SyncHostLinks(ctx context.Context, want func() ([]*api.Network, error)) error
}
