package vppagent

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/telcni/telcni/attach"
)

// ensurePod finds the pod's interface by tag or builds it. A half-built
// interface is removed before the error is returned.
func (m *Manager) ensurePod(ctx context.Context, v *vpp, st *state, spec PodInterface) (*Record, error) {
	r, err := m.describe(spec)
	if err != nil {
		return nil, err
	}
	rec := &r
	tag := spec.Tag()
	if i, ok := st.byTag[tag]; ok {
		rec.SwIfIndex = i.Index
		return rec, nil
	}
	idx, err := m.createPodIf(ctx, v, rec)
	if err != nil {
		return nil, err
	}
	rec.SwIfIndex = idx
	if err := m.configurePod(ctx, v, st, rec); err != nil {
		uctx, cancel := attach.UndoContext(ctx)
		defer cancel()
		if derr := m.deletePod(uctx, v, *rec); derr != nil {
			m.log.Warn("undoing a half-built pod interface failed; a reconcile is owed", "tag", tag, "err", derr)
			m.oweReconcile()
		}
		return nil, err
	}
	st.add(swIf{Index: idx, Tag: tag})
	return rec, nil
}

// describe is the record of spec before VPP is asked anything: its socket
// and the device-info the pod application gets.
func (m *Manager) describe(spec PodInterface) (Record, error) {
	rec := Record{Spec: spec}
	n := &spec.Network
	switch n.Kind {
	case KindMemif:
		sock, podPath := spec.memifSocket(m.runDir)
		rec.Socket = sock
		mode := n.Memif.Mode
		if mode == "" {
			mode = MemifModeEthernet
		}
		rec.DeviceInfo = DeviceInfo{Type: "memif", Memif: &MemifInfo{Role: "client", Mode: mode, Path: podPath, ID: 0}}
	case KindVhostUser:
		path, err := spec.vhostSocket(m.runDir)
		if err != nil {
			return rec, err
		}
		rec.Socket = path
		podMode := "client"
		if n.Vhost.Mode == "client" {
			podMode = "server"
		}
		rec.DeviceInfo = DeviceInfo{Type: "vhost-user", Vhost: &VhostUserInfo{Mode: podMode, Path: path}}
	}
	return rec, nil
}

func (m *Manager) createPodIf(ctx context.Context, v *vpp, rec *Record) (uint32, error) {
	n := &rec.Spec.Network
	tag := rec.Spec.Tag()
	switch n.Kind {
	case KindMemif:
		// A socket left registered by a half-done earlier attempt is
		// reused: VPP refuses the same filename twice.
		socks, err := v.memifSockets(ctx)
		if err != nil {
			return 0, err
		}
		sid := invalidIndex
		for id, f := range socks {
			if id != 0 && socketMatches(f, rec.Socket) {
				sid = id
			}
		}
		if sid == invalidIndex {
			if n.Memif.Socket == SocketFile {
				if err := os.MkdirAll(filepath.Dir(rec.Socket), 0o755); err != nil {
					return 0, fmt.Errorf("create memif socket dir: %w", err)
				}
				_ = os.Remove(rec.Socket) // left by a VPP that died; blocks bind
			}
			if sid, err = v.memifSocketAdd(ctx, rec.Socket); err != nil {
				return 0, err
			}
		}
		idx, err := v.memifCreate(ctx, sid, 0, n.Memif)
		if err != nil {
			uctx, cancel := attach.UndoContext(ctx)
			defer cancel()
			_ = v.memifSocketDel(uctx, sid) // tagless: reconcile finds it by its file name
			return 0, err
		}
		if err := v.setTag(ctx, idx, tag); err != nil {
			// Untagged, nothing would ever recognise this interface
			// as telcni's: it must go now.
			uctx, cancel := attach.UndoContext(ctx)
			defer cancel()
			if derr := v.memifDelete(uctx, idx); derr != nil {
				m.log.Error("an untagged memif interface could not be removed", "swIfIndex", idx, "err", derr)
			}
			_ = v.memifSocketDel(uctx, sid)
			return 0, err
		}
		return idx, nil
	case KindVhostUser:
		if err := os.MkdirAll(filepath.Dir(rec.Socket), 0o755); err != nil {
			return 0, fmt.Errorf("create vhost-user socket dir: %w", err)
		}
		server := n.Vhost.Mode != "client"
		if server {
			_ = os.Remove(rec.Socket) // a stale socket file from a dead VPP blocks bind
		}
		return v.vhostCreate(ctx, rec.Socket, server, tag)
	}
	return 0, fmt.Errorf("vppagent: kind %q", n.Kind)
}

// configurePod joins the interface to its network and brings it up.
// configurePod applies the pod interface's configuration, then its
// firewall; both are idempotent, so reconcile re-applies them to repair drift.
func (m *Manager) configurePod(ctx context.Context, v *vpp, st *state, rec *Record) error {
	if err := m.configurePodLink(ctx, v, st, rec); err != nil {
		return err
	}
	return m.applyFirewall(ctx, v, rec)
}

func (m *Manager) configurePodLink(ctx context.Context, v *vpp, st *state, rec *Record) error {
	n := &rec.Spec.Network
	idx := rec.SwIfIndex
	if n.MTU > 0 {
		if err := v.setMTU(ctx, idx, n.MTU); err != nil {
			return err
		}
	}
	if !n.L3 {
		if err := v.setBridge(ctx, idx, n.BridgeDomain(), true); err != nil {
			return err
		}
		return v.setUp(ctx, idx, true)
	}
	loop, ok := st.byTag[netTag(n.Name)]
	if !ok {
		return fmt.Errorf("network %q: L3 loopback missing", n.Name)
	}
	if err := v.setTable(ctx, idx, n.Table); err != nil {
		return err
	}
	gws := rec.Spec.Gateways
	for _, p := range rec.Spec.IPs {
		if len(gws) == 0 || !hasFamily(gws, p.Addr()) {
			return fmt.Errorf("network %q: L3 needs a gateway for %s", n.Name, p)
		}
	}
	for _, gw := range gws {
		if err := v.addAddress(ctx, loop.Index, netip.PrefixFrom(gw, gw.BitLen())); err != nil {
			return err
		}
	}
	if err := v.setUnnumbered(ctx, idx, loop.Index, true); err != nil {
		return err
	}
	if slices.ContainsFunc(gws, netip.Addr.Is6) {
		if err := v.ip6Enable(ctx, idx); err != nil {
			return err
		}
	}
	if err := v.setUp(ctx, idx, true); err != nil {
		return err
	}
	for _, gw := range gws {
		if err := v.proxyGateway(ctx, n.Table, idx, gw, true); err != nil {
			return err
		}
	}
	for _, p := range rec.Spec.IPs {
		if err := v.route(ctx, n.Table, idx, p.Addr(), true); err != nil {
			return err
		}
	}
	return nil
}

func hasFamily(addrs []netip.Addr, a netip.Addr) bool {
	for _, x := range addrs {
		if x.Is4() == a.Is4() {
			return true
		}
	}
	return false
}

// deletePod removes the pod's interface (found by tag, since indices
// change when VPP restarts) and its socket. Missing objects are fine.
func (m *Manager) deletePod(ctx context.Context, v *vpp, rec Record) error {
	ifs, err := v.dumpInterfaces(ctx)
	if err != nil {
		return err
	}
	tag := rec.Spec.Tag()
	for _, i := range ifs {
		if i.Tag != tag {
			continue
		}
		if rec.Spec.Network.L3 {
			// Best effort: deleting the interface would leave these
			// pointing at nothing; what fails here reconcile finds again.
			for _, p := range rec.Spec.IPs {
				_ = v.route(ctx, rec.Spec.Network.Table, i.Index, p.Addr(), false)
			}
			for _, gw := range rec.Spec.Gateways {
				_ = v.proxyGateway(ctx, rec.Spec.Network.Table, i.Index, gw, false)
			}
		}
		if err := m.deleteIf(ctx, v, i); err != nil {
			return err
		}
	}
	if _, hasPolicy := m.policyOf(tag); len(rec.Spec.Network.Firewall) > 0 || hasPolicy {
		if err := m.removeFirewall(ctx, v, tag); err != nil {
			return err
		}
		m.forgetPolicy(tag)
	}
	if rec.Spec.Network.Kind == KindMemif {
		if err := m.deleteSocket(ctx, v, rec.Socket); err != nil {
			return err
		}
	}
	if rec.Spec.Network.Kind == KindVhostUser && rec.Spec.Network.Vhost.Mode != "client" {
		_ = os.Remove(rec.Socket)
	}
	return nil
}

func (m *Manager) deleteSocket(ctx context.Context, v *vpp, name string) error {
	socks, err := v.memifSockets(ctx)
	if err != nil {
		return err
	}
	for id, f := range socks {
		if id != 0 && socketMatches(f, name) {
			if err := v.memifSocketDel(ctx, id); err != nil {
				return err
			}
		}
	}
	return nil
}

// socketMatches compares a dumped socket filename with ours; the dump
// truncates names to 107 bytes.
func socketMatches(dumped, ours string) bool {
	return dumped == ours || (len(dumped) >= 100 && strings.HasPrefix(ours, dumped))
}

// deleteIf removes one interface by its type.
func (m *Manager) deleteIf(ctx context.Context, v *vpp, i swIf) error {
	switch {
	case strings.HasPrefix(i.Name, "memif"):
		return v.memifDelete(ctx, i.Index)
	case strings.HasPrefix(i.Name, "VirtualEthernet"):
		return v.vhostDelete(ctx, i.Index)
	case i.Sup != i.Index && i.Name != "":
		return v.deleteSubif(ctx, i.Index)
	case strings.HasPrefix(i.Name, "loop"):
		if isOurs(i.Tag) {
			if err := v.dropProxyArpFor(ctx, i.Index); err != nil {
				return err
			}
		}
		return v.deleteLoopback(ctx, i.Index)
	case strings.HasPrefix(i.Name, "host-"):
		return v.afPacketDelete(ctx, strings.TrimPrefix(i.Name, "host-"))
	case strings.HasPrefix(i.Tag, tagPrefix+"uplink:"+UplinkAFXDP+":"):
		return v.afXDPDelete(ctx, i.Index)
	case strings.HasPrefix(i.Tag, tagPrefix+"uplink:"+UplinkAVF+":"):
		return v.avfDelete(ctx, i.Index)
	}
	return fmt.Errorf("vppagent: do not know how to delete interface %d %q (tag %q)", i.Index, i.Name, i.Tag)
}
