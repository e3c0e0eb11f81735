package api

import "fmt"

// VPPOptions are the options of networks whose interfaces VPP serves
// (paths memif and vhostuser). The common fields keep their meaning:
// Mode is the memif mode (ethernet, ip) or VPP's vhost-user role (server:
// VPP makes the socket; client: the pod does); VLAN puts an L2 network on
// a dot1q sub-interface of the uplink; MTU is the VPP interface MTU.
type VPPOptions struct {
	// Routed makes an L3 network: VPP routes each pod's /32 and /128 to its
	// interface and answers ARP/ND for the gateway. Default: one L2 bridge
	// domain per network.
	Routed bool `json:"routed,omitempty"`
	// Table is the VPP FIB table of a routed network (0: the default table).
	Table uint32 `json:"table,omitempty"`
	// Socket is where a memif socket lives: "abstract" (default; in the
	// pod's netns, no host mount) or "file" (a per-pod file under the
	// agent's run dir).
	Socket     string `json:"socket,omitempty"`
	Queues     int    `json:"queues,omitempty"`     // memif queue pairs (1)
	RingSize   int    `json:"ringSize,omitempty"`   // memif ring entries, power of 2 (1024)
	BufferSize int    `json:"bufferSize,omitempty"` // memif buffer bytes (2048)
	// Uplink joins an L2 network's bridge domain to the node's network.
	Uplink *VPPUplink `json:"uplink,omitempty"`
}

// VPPUplink names the node interface of an L2 VPP network.
type VPPUplink struct {
	Kind string `json:"kind"`           // af_packet | af_xdp | avf | dpdk | dpdk-vf
	Name string `json:"name,omitempty"` // host interface (af_packet, af_xdp) or VPP interface (dpdk)
	PCI  string `json:"pci,omitempty"`  // VF PCI address (avf)
	// PF takes the uplink's VF from the node's SR-IOV pool (avf, dpdk-vf):
	// the network holds one VF of this PF while it has pods.
	PF string `json:"pf,omitempty"`
}

// IsVPP reports whether VPP serves the path's interfaces.
func (p PathKind) IsVPP() bool { return p == PathMemif || p == PathVhostUser }

func (n *Network) validateVPP(fe *fieldErrors, p string) {
	v := n.VPP
	if n.Path == PathMemif && n.Mode == "ip" && (v == nil || !v.Routed) {
		fe.add(join(p, "mode"), n.Mode, "memif mode ip needs vpp.routed")
	}
	if v == nil {
		if n.VLAN != 0 && n.Path.IsVPP() {
			fe.add(join(p, "vlan"), n.VLAN, "needs vpp.uplink")
		}
		return
	}
	vp := join(p, "vpp")
	if !n.Path.IsVPP() {
		fe.add(vp, "{...}", "is not used by path %s", n.Path)
		return
	}
	if n.Path == PathVhostUser {
		for f, set := range map[string]bool{"socket": v.Socket != "", "queues": v.Queues != 0, "ringSize": v.RingSize != 0, "bufferSize": v.BufferSize != 0} {
			if set {
				fe.add(join(vp, f), nil, "is a memif option, not used by path vhostuser")
			}
		}
	}
	switch v.Socket {
	case "", "abstract", "file":
	default:
		fe.add(join(vp, "socket"), v.Socket, "is not abstract or file")
	}
	if v.Queues < 0 || v.Queues > 255 {
		fe.add(join(vp, "queues"), v.Queues, "is out of range 1-255")
	}
	if r := v.RingSize; r != 0 && (r < 8 || r > 1<<15 || r&(r-1) != 0) {
		fe.add(join(vp, "ringSize"), r, "is not a power of 2 in 8-32768")
	}
	if v.BufferSize < 0 || v.BufferSize > 65535 {
		fe.add(join(vp, "bufferSize"), v.BufferSize, "is out of range 1-65535")
	}
	if n.VLAN != 0 && v.Uplink == nil {
		fe.add(join(p, "vlan"), n.VLAN, "needs vpp.uplink")
	}
	if u := v.Uplink; u != nil {
		up := join(vp, "uplink")
		if v.Routed {
			fe.add(up, "{...}", "joins an L2 bridge domain; a routed network has none")
		}
		switch u.Kind {
		case "af_packet", "af_xdp", "dpdk":
			if u.Name == "" {
				fe.add(join(up, "name"), nil, "is required by uplink kind %s", u.Kind)
			}
			if u.PF != "" {
				fe.add(join(up, "pf"), u.PF, "is not used by uplink kind %s (only avf and dpdk-vf take a VF from the pool)", u.Kind)
			}
		case "avf":
			switch {
			case u.PF != "" && u.PCI != "":
				fe.add(join(up, "pci"), u.PCI, "and vpp.uplink.pf exclude each other (pci names the VF, pf takes one from the pool)")
			case u.PF != "":
			case u.PCI == "":
				fe.add(join(up, "pf"), nil, "is required by uplink kind avf unless vpp.uplink.pci names the VF")
			default:
				var d, b, s, f uint
				if _, err := fmt.Sscanf(u.PCI, "%x:%x:%x.%x", &d, &b, &s, &f); err != nil {
					fe.add(join(up, "pci"), u.PCI, "is not a PCI address (dddd:bb:ss.f)")
				}
			}
		case "dpdk-vf":
			if u.PF == "" {
				fe.add(join(up, "pf"), nil, "is required by uplink kind dpdk-vf")
			}
			if u.PCI != "" {
				fe.add(join(up, "pci"), u.PCI, "is not used by uplink kind dpdk-vf (the VF comes from vpp.uplink.pf's pool)")
			}
			if u.Name != "" {
				fe.add(join(up, "name"), u.Name, "is not used by uplink kind dpdk-vf (VPP's interface is found by the VF's PCI address: leave it unnamed in startup.conf)")
			}
		default:
			fe.add(join(up, "kind"), u.Kind, "is not one of af_packet, af_xdp, avf, dpdk, dpdk-vf")
		}
		if u.PF != "" && !ValidIfName(u.PF) {
			fe.add(join(up, "pf"), u.PF, "is not a valid interface name")
		}
	}
}
