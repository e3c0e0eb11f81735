package vppagent

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/telcni/telcni/attach"
)

// Kind is the pod-side interface type VPP serves.
type Kind string

const (
	KindMemif     Kind = "memif"
	KindVhostUser Kind = "vhostuser"
)

// Memif modes and socket kinds.
const (
	MemifModeEthernet = "ethernet"
	MemifModeIP       = "ip"
	// SocketAbstract puts the memif socket in the pod's netns as an
	// abstract socket: the pod needs no host mount.
	SocketAbstract = "abstract"
	// SocketFile puts a per-pod socket file under the agent's run dir,
	// which the pod mounts.
	SocketFile = "file"
)

// Uplink kinds.
const (
	UplinkAFPacket = "af_packet" // a host interface; works on any VM
	UplinkAFXDP    = "af_xdp"
	UplinkAVF      = "avf"  // an Intel VF by PCI address (or from the VF pool: PF), created at run time
	UplinkDPDK     = "dpdk" // an interface VPP owns from its startup.conf
	// UplinkDPDKVF is a VF from the node's VF pool (PF) that VPP's DPDK
	// plugin has: DPDK cannot add a device at run time, so VPP's
	// startup.conf lists it (dpdk { dev <pci> }, no name) and the agent
	// adopts one of the PF's VFs VPP has, found by the PCI-derived name.
	UplinkDPDKVF = "dpdk-vf"
)

// MemifOptions shapes a memif interface.
type MemifOptions struct {
	Mode       string `json:"mode,omitempty"`       // ethernet (default) | ip
	Socket     string `json:"socket,omitempty"`     // abstract (default) | file
	Queues     int    `json:"queues,omitempty"`     // rx and tx queue pairs; 1 when zero
	RingSize   int    `json:"ringSize,omitempty"`   // entries per ring, power of 2; 1024 when zero
	BufferSize int    `json:"bufferSize,omitempty"` // bytes per buffer; 2048 when zero
}

// VhostOptions shapes a vhost-user interface.
type VhostOptions struct {
	// Mode is VPP's role: server (VPP creates the socket; default) or
	// client (the pod application creates it).
	Mode string `json:"mode,omitempty"`
}

// Uplink connects a network's bridge domain (L2) to the outside.
type Uplink struct {
	Kind string `json:"kind"`           // af_packet | af_xdp | avf | dpdk | dpdk-vf
	Name string `json:"name,omitempty"` // host interface (af_packet, af_xdp) or VPP interface name (dpdk)
	// PCI is the avf VF's address; with PF, the address of the VF the
	// pool lent (filled in by the Manager).
	PCI string `json:"pci,omitempty"`
	// PF takes the VF from the node's SR-IOV pool (avf, dpdk-vf): the
	// network borrows one VF of this PF while it has pods.
	PF string `json:"pf,omitempty"`
}

// Pooled reports whether the uplink's VF is lent by the VF pool.
func (u *Uplink) Pooled() bool {
	return u != nil && u.PF != "" && (u.Kind == UplinkAVF || u.Kind == UplinkDPDKVF)
}

// Network is what vppagent needs to know about one network.
type Network struct {
	Name  string       `json:"name"`
	Kind  Kind         `json:"kind"`
	L3    bool         `json:"l3,omitempty"` // routed (VPP routes /32 /128 to pods) instead of one bridge domain
	Memif MemifOptions `json:"memif,omitzero"`
	Vhost VhostOptions `json:"vhost,omitzero"`
	// Uplink, when set on an L2 network, joins the bridge domain to a
	// node interface; VLAN > 0 uses a dot1q sub-interface of it.
	Uplink *Uplink `json:"uplink,omitempty"`
	VLAN   int     `json:"vlan,omitempty"`
	MTU    int     `json:"mtu,omitempty"`
	Table  uint32  `json:"table,omitempty"` // L3: VPP FIB table; 0 is the default table
	// Firewall is enforced with VPP ACLs on each pod interface.
	Firewall []FirewallRule `json:"firewall,omitempty"`
}

// Validate reports the first thing VPP could not build.
func (n *Network) Validate() error {
	switch n.Kind {
	case KindMemif, KindVhostUser:
	default:
		return fmt.Errorf("network %q: path %q is not served by VPP", n.Name, n.Kind)
	}
	switch n.Memif.Mode {
	case "", MemifModeEthernet:
	case MemifModeIP:
		if !n.L3 {
			return fmt.Errorf("network %q: memif mode ip needs an L3 network", n.Name)
		}
	default:
		return fmt.Errorf("network %q: memif mode %q (want ethernet or ip)", n.Name, n.Memif.Mode)
	}
	switch n.Memif.Socket {
	case "", SocketAbstract, SocketFile:
	default:
		return fmt.Errorf("network %q: memif socket %q (want abstract or file)", n.Name, n.Memif.Socket)
	}
	if q := n.Memif.Queues; q < 0 || q > 255 {
		return fmt.Errorf("network %q: memif queues %d out of 1..255", n.Name, q)
	}
	if r := n.Memif.RingSize; r != 0 && (r < 8 || r > 1<<15 || r&(r-1) != 0) {
		return fmt.Errorf("network %q: memif ring size %d is not a power of 2 in 8..32768", n.Name, r)
	}
	if b := n.Memif.BufferSize; b < 0 || b > 65535 {
		return fmt.Errorf("network %q: memif buffer size %d out of range", n.Name, b)
	}
	switch n.Vhost.Mode {
	case "", "server", "client":
	default:
		return fmt.Errorf("network %q: vhost-user mode %q (want server or client)", n.Name, n.Vhost.Mode)
	}
	if n.VLAN < 0 || n.VLAN > 4094 {
		return fmt.Errorf("network %q: vlan %d out of 0..4094", n.Name, n.VLAN)
	}
	if n.VLAN > 0 && n.Uplink == nil {
		return fmt.Errorf("network %q: vlan %d needs an uplink", n.Name, n.VLAN)
	}
	if n.Uplink != nil {
		if n.L3 {
			return fmt.Errorf("network %q: an uplink joins an L2 network's bridge domain; L3 networks route via the node's own uplink configuration", n.Name)
		}
		switch n.Uplink.Kind {
		case UplinkAFPacket, UplinkAFXDP, UplinkDPDK:
			if n.Uplink.Name == "" {
				return fmt.Errorf("network %q: uplink %s needs a name", n.Name, n.Uplink.Kind)
			}
		case UplinkAVF:
			if n.Uplink.PF != "" && n.Uplink.PCI == "" {
				break // lent by the pool
			}
			if _, err := pciToU32(n.Uplink.PCI); err != nil {
				return fmt.Errorf("network %q: uplink avf: %w", n.Name, err)
			}
		case UplinkDPDKVF:
			if n.Uplink.PF == "" {
				return fmt.Errorf("network %q: uplink dpdk-vf needs a pf", n.Name)
			}
			if n.Uplink.Name != "" {
				return fmt.Errorf("network %q: uplink dpdk-vf is found by its VF's PCI address, not by a name", n.Name)
			}
		default:
			return fmt.Errorf("network %q: uplink kind %q (want af_packet, af_xdp, avf, dpdk or dpdk-vf)", n.Name, n.Uplink.Kind)
		}
	}
	return nil
}

// BridgeDomain is the network's bridge-domain id: a stable hash of its
// name, so that it survives agent and VPP restarts without a registry.
// VPP bridge-domain ids are 24-bit; 0 is reserved.
func (n *Network) BridgeDomain() uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(n.Name))
	return h.Sum32()%(1<<24-2) + 1
}

// PodInterface asks for one pod interface.
type PodInterface struct {
	ContainerID string         `json:"containerID"`
	IfName      string         `json:"ifName"`
	Netns       string         `json:"netns"` // pod netns path
	Network     Network        `json:"network"`
	IPs         []netip.Prefix `json:"ips,omitempty"`
	Gateways    []netip.Addr   `json:"gateways,omitempty"`
	// UplinkVF is the VF the pool lent the network's uplink (Uplink.PF),
	// as the agent's record of the pod keeps it; the Manager fills it in.
	UplinkVF *attach.UplinkVF `json:"uplinkVF,omitempty"`
}

// Key identifies the interface in records.
func (p *PodInterface) Key() string { return p.ContainerID + "/" + p.IfName }

// tagPrefix marks every VPP object telcni owns.
const tagPrefix = "telcni:"

// maxTag is VPP's tag length (string[64] with its NUL).
const maxTag = 63

// Tag is the VPP interface tag "telcni:<container-id>:<ifname>". VPP tags
// hold 63 bytes, so a long container id is shortened to its head plus a
// hash of the whole id (8 hex digits): ids that share a long prefix still
// get distinct tags, and the head stays readable in VPP's CLI.
func (p *PodInterface) Tag() string {
	cid := p.ContainerID
	if room := maxTag - len(tagPrefix) - 1 - len(p.IfName); len(cid) > room {
		h := fnv.New32a()
		_, _ = h.Write([]byte(cid))
		cid = cid[:max(room-8, 0)] + fmt.Sprintf("%08x", h.Sum32())
	}
	return tagPrefix + cid + ":" + p.IfName
}

// netTag tags objects shared by a network's pods (bridge domain, uplink,
// sub-interface, L3 loopback).
func netTag(network string) string {
	t := tagPrefix + "net:" + network
	if len(t) > maxTag {
		t = t[:maxTag]
	}
	return t
}

// shortID is the container id prefix used in socket paths.
func shortID(cid string) string {
	if len(cid) > 12 {
		return cid[:12]
	}
	return cid
}

// memifSocket is the socket filename VPP listens on for this interface:
// an abstract name inside the pod's netns, or a file under runDir.
func (p *PodInterface) memifSocket(runDir string) (vppName, podPath string) {
	if p.Network.Memif.Socket == SocketFile {
		f := filepath.Join(runDir, "memif", shortID(p.ContainerID)+"-"+p.IfName+".sock")
		return f, f
	}
	name := "telcni-" + shortID(p.ContainerID) + "-" + p.IfName
	return "abstract:" + name + ",netns_name=" + p.Netns, "abstract:" + name
}

// vhostSocket is the per-pod vhost-user socket path, short enough for
// sun_path (108 bytes).
func (p *PodInterface) vhostSocket(runDir string) (string, error) {
	f := filepath.Join(runDir, "vhu", shortID(p.ContainerID)+"-"+p.IfName+".sock")
	if len(f) >= 108 {
		return "", fmt.Errorf("vhost-user socket path %q is %d bytes; unix sockets allow 107: use a shorter run dir", f, len(f))
	}
	return f, nil
}

// DeviceInfo is the NPWG device-info for the pod application.
type DeviceInfo struct {
	Type  string         `json:"type"` // memif | vhost-user
	Memif *MemifInfo     `json:"memif,omitempty"`
	Vhost *VhostUserInfo `json:"vhost-user,omitempty"`
}

// MemifInfo tells the pod application how to reach its memif.
type MemifInfo struct {
	Role string `json:"role"` // the pod's role: client (VPP serves)
	Mode string `json:"mode"`
	Path string `json:"path"`
	ID   uint32 `json:"id"`
}

// VhostUserInfo is the spec's vhost-user device-info: mode is the pod's role.
type VhostUserInfo struct {
	Mode string `json:"mode"`
	Path string `json:"path"`
}

// Record is what the Manager knows of one pod interface it serves. It is
// derived from the agent's attachment record (describe) and from VPP (the
// sw_if_index, found again by tag), never persisted on its own.
type Record struct {
	Spec       PodInterface `json:"spec"`
	SwIfIndex  uint32       `json:"swIfIndex"` // last known; re-resolved by tag
	Socket     string       `json:"socket,omitempty"`
	DeviceInfo DeviceInfo   `json:"deviceInfo"`
}

func isOurs(tag string) bool { return strings.HasPrefix(tag, tagPrefix) }
