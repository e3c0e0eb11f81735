package vppagent

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strconv"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
)

// Path is the agent's attach.Path for memif and vhostuser networks.
type Path struct{ m *Manager }

var (
	_ attach.Path     = (*Path)(nil)
	_ attach.Readier  = (*Path)(nil)
	_ attach.Retainer = (*Path)(nil)
)

// NewPath serves the agent's VPP networks through m.
func NewPath(m *Manager) *Path { return &Path{m: m} }

// Kinds are the network paths Path serves.
func Kinds() []api.PathKind { return []api.PathKind{api.PathMemif, api.PathVhostUser} }

// Ready is nil while VPP is connected and compatible.
func (p *Path) Ready() error { return p.m.Ready() }

// ReadyFor is Ready for one network: VPP must also have the optional APIs
// (plugins) the network uses (attach.Readier).
func (p *Path) ReadyFor(n *api.Network) error {
	if err := p.m.Ready(); err != nil {
		return err
	}
	vn := NetworkFromAPI(n)
	return p.m.needs(&vn)
}

// Attach builds the pod's memif or vhost-user interface in VPP.
func (p *Path) Attach(ctx context.Context, req *attach.Request) (*attach.Interface, error) {
	spec, err := specFromRequest(req)
	if err != nil {
		return nil, attach.WithCode(attach.CodeInvalidConfig, err)
	}
	rec, err := p.m.Add(ctx, spec)
	if err != nil {
		return nil, coded(err)
	}
	state := map[string]string{
		"vppTag":       spec.Tag(),
		"vppSwIfIndex": strconv.FormatUint(uint64(rec.SwIfIndex), 10),
		"vppSocket":    rec.Socket,
	}
	if l := rec.Spec.UplinkVF; l != nil {
		// Every pod of the network records the VF its uplink holds: the
		// records hold the lease, across agent restarts (Retain).
		l.PutState(state)
	}
	return &attach.Interface{
		Name:       req.IfName,
		MTU:        req.Network.MTU,
		DeviceInfo: deviceInfo(rec),
		State:      state,
	}, nil
}

// Detach removes the interface; VPP being down is not an error (its
// objects are removed at reconcile, or vanished with a VPP restart).
func (p *Path) Detach(ctx context.Context, rec *attach.Record) error {
	return coded(p.m.Del(ctx, rec.ContainerID+"/"+rec.IfName))
}

// Retain makes the agent's ready attachments the truth for VPP (see
// attach.Retainer).
func (p *Path) Retain(ctx context.Context, recs []*attach.Record) error {
	specs := make([]PodInterface, 0, len(recs))
	for _, r := range recs {
		s, err := specFromRequest(&r.Request)
		if err != nil {
			// Its network no longer validates; the agent still holds the
			// record (DEL removes it), VPP just stops serving it.
			p.m.log.Warn("not retaining a VPP interface with an invalid network", "container", r.ContainerID, "ifname", r.IfName, "err", err)
			continue
		}
		if s.Network.Uplink.Pooled() {
			if l, ok := attach.UplinkVFFromState(s.Network.Name, r.Interface.State); ok {
				s.UplinkVF = &l
			}
		}
		specs = append(specs, s)
	}
	return p.m.Retain(ctx, specs)
}

// Check reports whether the recorded interface exists and is up in VPP.
func (p *Path) Check(ctx context.Context, rec *attach.Record) error {
	spec, err := specFromRequest(&rec.Request)
	if err != nil {
		return attach.WithCode(attach.CodeInvalidConfig, err)
	}
	if err := p.m.Check(ctx, spec); err != nil {
		var ue *UnavailableError
		if errors.As(err, &ue) {
			return attach.WithCode(attach.CodeTryAgainLater, err)
		}
		return attach.WithCode(attach.CodeCheckFailed, err)
	}
	return nil
}

func coded(err error) error {
	var ue *UnavailableError
	if errors.As(err, &ue) {
		return attach.WithCode(attach.CodeTryAgainLater, err)
	}
	var me *MissingPluginError
	if errors.As(err, &me) {
		return attach.WithCode(attach.CodeInvalidConfig, err)
	}
	return err
}

// NetworkFromAPI translates the agent's network model.
func NetworkFromAPI(n *api.Network) Network {
	out := Network{Name: n.Key(), VLAN: n.VLAN, MTU: n.MTU}
	switch n.Path {
	case api.PathMemif:
		out.Kind = KindMemif
		out.Memif.Mode = n.EffectiveMode()
	case api.PathVhostUser:
		out.Kind = KindVhostUser
		out.Vhost.Mode = n.EffectiveMode()
	default:
		out.Kind = Kind(n.Path)
	}
	for _, r := range n.Firewall {
		fr := FirewallRule{Direction: r.Direction, Drop: r.Action == "drop", Protocol: r.Protocol, Ports: r.Ports}
		if r.CIDR != "" {
			fr.CIDR = netip.MustParsePrefix(r.CIDR).Masked() // validated by api
		}
		out.Firewall = append(out.Firewall, fr)
	}
	if v := n.VPP; v != nil {
		out.L3, out.Table = v.Routed, v.Table
		out.Memif.Socket, out.Memif.Queues, out.Memif.RingSize, out.Memif.BufferSize = v.Socket, v.Queues, v.RingSize, v.BufferSize
		if v.Uplink != nil {
			out.Uplink = &Uplink{Kind: v.Uplink.Kind, Name: v.Uplink.Name, PCI: v.Uplink.PCI, PF: v.Uplink.PF}
		}
	}
	return out
}

func specFromRequest(req *attach.Request) (PodInterface, error) {
	if req.Network == nil {
		return PodInterface{}, errors.New("vppagent: request without a network")
	}
	spec := PodInterface{ContainerID: req.ContainerID, IfName: req.IfName, Netns: req.Netns, Network: NetworkFromAPI(req.Network)}
	// VPP answers ARP/ND for every gateway the pod may use: its subnets'
	// and the default-route gateways it named.
	for _, ip := range req.IPs {
		spec.IPs = append(spec.IPs, ip.Address)
	}
	for _, gw := range append(subnetGateways(req), req.Gateways()...) {
		if !slices.Contains(spec.Gateways, gw) {
			spec.Gateways = append(spec.Gateways, gw)
		}
	}
	return spec, spec.Network.Validate()
}

func deviceInfo(rec *Record) *api.DeviceInfo {
	d := &api.DeviceInfo{Version: api.DeviceInfoVersion}
	switch {
	case rec.DeviceInfo.Memif != nil:
		mi := rec.DeviceInfo.Memif
		d.Type = api.DeviceInfoMemif
		d.Memif = &api.Memif{Role: mi.Role, Mode: mi.Mode, Path: mi.Path, ID: mi.ID}
	case rec.DeviceInfo.Vhost != nil:
		d.Type = api.DeviceInfoVhostUser
		d.VhostUser = &api.VhostUser{Mode: rec.DeviceInfo.Vhost.Mode, Path: rec.DeviceInfo.Vhost.Path}
	}
	return d
}

func subnetGateways(req *attach.Request) []netip.Addr {
	var out []netip.Addr
	for _, ip := range req.IPs {
		if ip.Gateway.IsValid() {
			out = append(out, ip.Gateway)
		}
	}
	return out
}
