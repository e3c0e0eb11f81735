package vppagent

import (
	"context"
	"fmt"

	"go.fd.io/govpp/binapi/interface_types"

	"github.com/telcni/telcni/attach"
)

// Describe traces a recorded pod interface to its VPP objects for
// telcnictl pod (the agent's InterfaceDescriber): sw_if_index, VPP's name
// for it, the tag, the memif socket or vhost-user path, its state and its
// counters from the stats segment. What VPP cannot tell (it is down) is
// left out and the error says why; the Manager's own record is still
// returned.
func (p *Path) Describe(ctx context.Context, rec *attach.Record) (map[string]any, error) {
	return p.m.Describe(ctx, rec.ContainerID+"/"+rec.IfName)
}

// Describe is Path.Describe for the interface key "<container>/<ifname>".
func (m *Manager) Describe(ctx context.Context, key string) (map[string]any, error) {
	r, ok := m.recs.get(key)
	if !ok {
		return nil, fmt.Errorf("VPP manager serves no interface %s", key)
	}
	out := map[string]any{
		"swIfIndex": r.SwIfIndex,
		"tag":       r.Spec.Tag(),
		"kind":      string(r.Spec.Network.Kind),
	}
	if r.Socket != "" {
		out["socket"] = r.Socket
	}
	if mi := r.DeviceInfo.Memif; mi != nil {
		out["podSocket"] = mi.Path
		out["memifMode"] = mi.Mode
	}
	if vh := r.DeviceInfo.Vhost; vh != nil {
		out["vhostUserPath"] = vh.Path
		out["vhostUserPodMode"] = vh.Mode
	}
	if r.Spec.Network.L3 {
		out["l3Table"] = r.Spec.Network.Table
	} else {
		out["bridgeDomain"] = r.Spec.Network.BridgeDomain()
	}
	c, err := m.conn.API()
	if err != nil {
		return out, err
	}
	ifs, err := (&vpp{conn: c}).dumpInterfaces(ctx)
	if err != nil {
		return out, err
	}
	found := false
	for _, i := range ifs {
		if i.Tag != r.Spec.Tag() {
			continue
		}
		found = true
		out["swIfIndex"] = i.Index
		out["name"] = i.Name
		out["adminUp"] = i.Flags&interface_types.IF_STATUS_API_FLAG_ADMIN_UP != 0
		out["linkUp"] = i.Flags&interface_types.IF_STATUS_API_FLAG_LINK_UP != 0
	}
	if !found {
		return out, fmt.Errorf("VPP has no interface tagged %s", r.Spec.Tag())
	}
	cs, err := m.PodCounters()
	if err != nil {
		return out, fmt.Errorf("counters: %w", err)
	}
	for _, cn := range cs {
		if cn.ContainerID+"/"+cn.IfName == key {
			out["counters"] = map[string]any{
				"rxPackets": cn.RxPackets, "rxBytes": cn.RxBytes, "txPackets": cn.TxPackets, "txBytes": cn.TxBytes,
				"drops": cn.Drops, "rxErrors": cn.RxErrors, "txErrors": cn.TxErrors,
			}
		}
	}
	return out, nil
}
