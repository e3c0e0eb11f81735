package vppagent

import (
	"context"
	"fmt"
	"strings"
)

// state is one dump of VPP's interfaces and bridge domains.
type state struct {
	ifs   []swIf
	byTag map[string]swIf
	bds   map[uint32]string
}

func (m *Manager) observe(ctx context.Context, v *vpp) (*state, error) {
	ifs, err := v.dumpInterfaces(ctx)
	if err != nil {
		return nil, err
	}
	bds, err := v.bridgeDomains(ctx)
	if err != nil {
		return nil, err
	}
	st := &state{ifs: ifs, byTag: map[string]swIf{}, bds: bds}
	for _, i := range ifs {
		if i.Tag != "" {
			st.byTag[i.Tag] = i
		}
	}
	return st, nil
}

func (st *state) byName(name string) (swIf, bool) {
	for _, i := range st.ifs {
		if i.Name == name {
			return i, true
		}
	}
	return swIf{}, false
}

// dpdkByPCI finds the interface VPP's DPDK plugin made for a PCI device
// by its name: <type><bus>/<slot>/<function> in hex, the domain first when
// it is not 0: 0000:01:10.2 is VirtualFunctionEthernet1/10/2. (With
// startup.conf's interface-name-format decimal the names are ambiguous
// with other devices' hex names: name the interface in startup.conf and
// the uplink instead.)
func (st *state) dpdkByPCI(pci string) (swIf, bool) {
	var dom, bus, slot, fn uint32
	if _, err := fmt.Sscanf(pci, "%x:%x:%x.%x", &dom, &bus, &slot, &fn); err != nil {
		return swIf{}, false
	}
	sfx := fmt.Sprintf("%x/%x/%x", bus, slot, fn)
	if dom != 0 {
		sfx = fmt.Sprintf("%x/", dom) + sfx
	}
	for _, i := range st.ifs {
		rest, ok := strings.CutSuffix(i.Name, sfx)
		if !ok || rest == "" {
			continue
		}
		// The type word ends in a letter that is no hex digit
		// (...Ethernet), so 0000:0a:00.0 is not ...Ethernetba/0/0.
		if c := rest[len(rest)-1]; strings.HasSuffix(rest, "Ethernet") || (c >= 'g' && c <= 'z') || (c >= 'G' && c <= 'Z') {
			return i, true
		}
	}
	return swIf{}, false
}

func (st *state) add(i swIf) {
	st.ifs = append(st.ifs, i)
	if i.Tag != "" {
		st.byTag[i.Tag] = i
	}
}

func uplinkTag(u *Uplink) string {
	id := u.Name
	if u.Kind == UplinkAVF {
		id = u.PCI
	}
	t := tagPrefix + "uplink:" + u.Kind + ":" + id
	if len(t) > maxTag {
		t = t[:maxTag]
	}
	return t
}

// ensureUplink finds or creates the network's uplink interface.
func (m *Manager) ensureUplink(ctx context.Context, v *vpp, st *state, u *Uplink) (uint32, error) {
	tag := uplinkTag(u)
	if i, ok := st.byTag[tag]; ok {
		return i.Index, nil
	}
	var idx uint32
	var err error
	switch u.Kind {
	case UplinkDPDK:
		i, ok := st.byName(u.Name)
		if !ok {
			return 0, fmt.Errorf("uplink: VPP has no interface %q (a dpdk uplink must be configured in VPP's startup.conf)", u.Name)
		}
		// Not ours: VPP owns it from startup.conf, so it is never tagged
		// or deleted; it is only brought up.
		return i.Index, v.setUp(ctx, i.Index, true)
	case UplinkDPDKVF:
		i, ok := st.dpdkByPCI(u.PCI)
		if !ok {
			return 0, fmt.Errorf("uplink dpdk-vf: VPP has no DPDK interface for any free VF of PF %s (lent %s; VPP's DPDK plugin cannot add a device at run time: list VFs of the PF in VPP's startup.conf, dpdk { dev %s }, without a name, and restart VPP)", u.PF, u.PCI, u.PCI)
		}
		// VPP's from startup.conf, like dpdk: never tagged or deleted.
		return i.Index, v.setUp(ctx, i.Index, true)
	case UplinkAFPacket:
		if i, ok := st.byName("host-" + u.Name); ok {
			return i.Index, v.setUp(ctx, i.Index, true)
		}
		idx, err = v.afPacketCreate(ctx, u.Name)
	case UplinkAFXDP:
		idx, err = v.afXDPCreate(ctx, u.Name, "xdp-"+u.Name)
	case UplinkAVF:
		idx, err = v.avfCreate(ctx, u.PCI)
	default:
		return 0, fmt.Errorf("uplink kind %q unknown", u.Kind)
	}
	if err != nil {
		return 0, err
	}
	if err := v.setTag(ctx, idx, tag); err != nil {
		return 0, err
	}
	st.add(swIf{Index: idx, Tag: tag})
	return idx, v.setUp(ctx, idx, true)
}

// ensureNetwork creates what a network's pods share: for L2 the bridge
// domain and its uplink (or dot1q sub-interface), for L3 the FIB table and
// a loopback that holds the gateway addresses.
func (m *Manager) ensureNetwork(ctx context.Context, v *vpp, st *state, n *Network) error {
	tag := netTag(n.Name)
	if n.L3 {
		if err := v.ensureTable(ctx, n.Table); err != nil {
			return err
		}
		if _, ok := st.byTag[tag]; ok {
			return nil
		}
		idx, err := v.createLoopback(ctx)
		if err != nil {
			return err
		}
		st.add(swIf{Index: idx, Tag: tag, Name: "loop"})
		if err := v.setTag(ctx, idx, tag); err != nil {
			return err
		}
		if err := v.setTable(ctx, idx, n.Table); err != nil {
			return err
		}
		return v.setUp(ctx, idx, true)
	}
	bd := n.BridgeDomain()
	if t, ok := st.bds[bd]; ok && t != tag {
		return fmt.Errorf("network %q: bridge domain %d is already used by %q", n.Name, bd, t)
	} else if !ok {
		if err := v.bridgeDomainAdd(ctx, bd, tag); err != nil {
			return err
		}
		st.bds[bd] = tag
	}
	if n.Uplink == nil {
		return nil
	}
	if n.Uplink.Pooled() && n.Uplink.PCI == "" {
		return fmt.Errorf("network %q: uplink %s of PF %s: no VF lent by the pool", n.Name, n.Uplink.Kind, n.Uplink.PF)
	}
	up, err := m.ensureUplink(ctx, v, st, n.Uplink)
	if err != nil {
		return fmt.Errorf("network %q: %w", n.Name, err)
	}
	member := up
	if n.VLAN > 0 {
		if i, ok := st.byTag[tag]; ok {
			member = i.Index
		} else {
			sub, err := v.createVLAN(ctx, up, n.VLAN)
			if err != nil {
				return fmt.Errorf("network %q: %w", n.Name, err)
			}
			st.add(swIf{Index: sub, Tag: tag, Sup: up})
			if err := v.setTag(ctx, sub, tag); err != nil {
				return err
			}
			if err := v.popTag(ctx, sub); err != nil {
				return err
			}
			member = sub
		}
	}
	if err := v.setBridge(ctx, member, bd, true); err != nil {
		return err
	}
	return v.setUp(ctx, member, true)
}

// gcNetworkIfUnused removes a network's shared objects when no record
// uses the network any more. Failures are logged: reconcile retries.
func (m *Manager) gcNetworkIfUnused(ctx context.Context, v *vpp, n *Network, rest []Record) {
	for _, r := range rest {
		if r.Spec.Network.Name == n.Name {
			return
		}
	}
	if err := m.collect(ctx, v, rest); err != nil {
		m.log.Warn("removing unused network objects failed; a reconcile is owed", "network", n.Name, "err", err)
		m.oweReconcile()
	}
}
