package api

// NetworkStatus is one element of the NPWG network-status annotation.
type NetworkStatus struct {
	Name       string      `json:"name"`
	Interface  string      `json:"interface,omitempty"`
	IPs        []string    `json:"ips,omitempty"`
	MAC        string      `json:"mac,omitempty"`
	Default    bool        `json:"default,omitempty"`
	DNS        *DNS        `json:"dns,omitempty"`
	DeviceInfo *DeviceInfo `json:"device-info,omitempty"`
}

// DNS is the NPWG DNS block.
type DNS struct {
	Nameservers []string `json:"nameservers,omitempty"`
	Domain      string   `json:"domain,omitempty"`
	Search      []string `json:"search,omitempty"`
	Options     []string `json:"options,omitempty"`
}

// Device-info types. "memif" is telcni's documented extension beside the
// spec's pci, vdpa and vhost-user types.
const (
	DeviceInfoPCI       = "pci"
	DeviceInfoVhostUser = "vhost-user"
	DeviceInfoMemif     = "memif"
	DeviceInfoVersion   = "1.1.0"
)

// DeviceInfo is the NPWG device-info block.
type DeviceInfo struct {
	Type      string     `json:"type"`
	Version   string     `json:"version"`
	PCI       *PCIDevice `json:"pci,omitempty"`
	VhostUser *VhostUser `json:"vhost-user,omitempty"`
	Memif     *Memif     `json:"memif,omitempty"`
}

// PCIDevice describes a VF or other PCI device given to the pod.
type PCIDevice struct {
	PCIAddress   string `json:"pci-address"`
	Vhostnet     string `json:"vhost-net,omitempty"`
	RdmaDevice   string `json:"rdma-device,omitempty"`
	PFPCIAddress string `json:"pf-pci-address,omitempty"`
	Representor  string `json:"representor-device,omitempty"`
}

// VhostUser describes a vhost-user socket: mode is the pod's role
// ("client" when VPP is the server).
type VhostUser struct {
	Mode string `json:"mode"`
	Path string `json:"path"`
}

// Memif describes a memif interface for the pod application: its role,
// mode, the socket ("abstract:name" for an abstract socket in the pod's
// netns) and the interface id on that socket.
type Memif struct {
	Role string `json:"role"` // the pod's role: "client" when VPP serves
	Mode string `json:"mode"` // ethernet | ip
	Path string `json:"path"`
	ID   uint32 `json:"id"`
}
