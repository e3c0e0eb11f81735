package vppagent

import (
	"context"
	"fmt"
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
		m.log.Warn("removing unused network objects failed; reconcile will retry", "network", n.Name, "err", err)
	}
}
