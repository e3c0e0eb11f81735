package api

import (
	"net/netip"
)

// PathKind says how a network's interfaces are made.
type PathKind string

const (
	PathIPVLAN     PathKind = "ipvlan"
	PathMACVLAN    PathKind = "macvlan"
	PathVLAN       PathKind = "vlan"
	PathVXLAN      PathKind = "vxlan"
	PathSRIOV      PathKind = "sriov"      // kernel VF moved into the pod
	PathSRIOVDPDK  PathKind = "sriov-dpdk" // VF bound to vfio-pci for a DPDK application
	PathMemif      PathKind = "memif"      // memif interface served by VPP
	PathVhostUser  PathKind = "vhostuser"  // vhost-user interface served by VPP
	DefaultNetNS            = "default"
	PluginTypeName          = "telcni"
)

// Network is one network definition. Its JSON form is also a valid CNI
// network configuration with "type": "telcni", so the same document can be
// the spec.config of a NetworkAttachmentDefinition, a file in the agent's
// network directory, or a plugin entry in a conflist.
type Network struct {
	CNIVersion string `json:"cniVersion,omitempty"`
	Type       string `json:"type,omitempty"` // "telcni" when present
	Name       string `json:"name"`
	// Namespace scopes the network like a NetworkAttachmentDefinition.
	// Empty means cluster-wide: any pod namespace may request it by name.
	Namespace string `json:"namespace,omitempty"`

	Path   PathKind `json:"path"`
	Master string   `json:"master,omitempty"` // host device the pod interfaces hang off
	Mode   string   `json:"mode,omitempty"`   // per path: macvlan/ipvlan mode, vlan attach mode
	VLAN   int      `json:"vlan,omitempty"`
	VXLAN  *VXLAN   `json:"vxlan,omitempty"`
	MTU    int      `json:"mtu,omitempty"`

	IPAM IPAM `json:"ipam"`
	// PolicyRoutingTable, when set, puts this interface's routes into its own
	// table with "from <pod ip> lookup <table>" rules, so that replies leave
	// by the interface the request came in on.
	PolicyRoutingTable int            `json:"policyRoutingTable,omitempty"`
	Firewall           []FirewallRule `json:"firewall,omitempty"`
	// VPP holds the options of memif and vhostuser networks (api/vpp.go).
	VPP   *VPPOptions   `json:"vpp,omitempty"`
	SRIOV *SRIOVOptions `json:"sriov,omitempty"` // sriov and sriov-dpdk VF settings (api/sriov.go)
	// Delegate names the CNI plugin of a delegate network (api/delegate.go).
	Delegate *DelegateOptions `json:"delegate,omitempty"`
}

// Key identifies a network across namespaces ("ns/name", or "name" when
// cluster-wide). IPAM pools and records use it.
func (n *Network) Key() string {
	if n.Namespace == "" {
		return n.Name
	}
	return n.Namespace + "/" + n.Name
}

// VXLAN describes the host VXLAN device of a vxlan network.
type VXLAN struct {
	VNI    int    `json:"vni"`
	Port   int    `json:"port,omitempty"`   // UDP port; 4789 when zero
	Group  string `json:"group,omitempty"`  // multicast group, or
	Remote string `json:"remote,omitempty"` // unicast remote VTEP
	Device string `json:"device,omitempty"` // underlay device
}

// IPAM is the address plan of a network.
type IPAM struct {
	Subnets []Subnet `json:"subnets,omitempty"`
	Routes  []Route  `json:"routes,omitempty"`
}

// Subnet is one IPv4 or IPv6 subnet. Dynamic allocation draws only from
// [RangeStart, RangeEnd]; a static request may name any usable address of
// the CIDR, so operators keep fixed addresses outside the dynamic range.
type Subnet struct {
	CIDR       string   `json:"cidr"`
	RangeStart string   `json:"rangeStart,omitempty"`
	RangeEnd   string   `json:"rangeEnd,omitempty"`
	Gateway    string   `json:"gateway,omitempty"`
	Exclude    []string `json:"exclude,omitempty"` // addresses or prefixes never handed out
}

// Route is a route installed in the pod for this network's interface.
type Route struct {
	Dst string `json:"dst"`
	GW  string `json:"gw,omitempty"`
}

// FirewallRule is one per-network filter rule (enforced by nftables in the
// pod's netns and by ACLs in VPP; typed here, enforced by a later path).
type FirewallRule struct {
	Direction string `json:"direction"`          // ingress | egress
	Action    string `json:"action"`             // accept | drop
	Protocol  string `json:"protocol,omitempty"` // tcp | udp | sctp | icmp | icmpv6 | "" (any)
	CIDR      string `json:"cidr,omitempty"`     // peer prefix; "" is any
	Ports     []int  `json:"ports,omitempty"`    // destination ports (tcp, udp, sctp)
}

// ParsedSubnet is a validated Subnet in netip form.
type ParsedSubnet struct {
	Prefix     netip.Prefix
	RangeStart netip.Addr
	RangeEnd   netip.Addr
	Gateway    netip.Addr // zero when the subnet has none
	Exclude    []netip.Prefix
}

// ParsedRoute is a validated Route.
type ParsedRoute struct {
	Dst netip.Prefix
	GW  netip.Addr // zero: on-link
}
