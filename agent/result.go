package agent

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
)

// Result builds the CNI result of an attachment in the caller's
// cniVersion: every interface (with its sandbox), every address with the
// index of its interface, and the routes.
func Result(rec *Attachment) (json.RawMessage, error) {
	res := &current.Result{CNIVersion: current.ImplementedSpecVersion}
	for _, r := range rec.Interfaces {
		idx := len(res.Interfaces)
		res.Interfaces = append(res.Interfaces, &current.Interface{
			Name: r.Interface.Name, Mac: r.Interface.MAC, Mtu: r.Interface.MTU, Sandbox: r.Interface.Sandbox,
			SocketPath: socketPath(r.Interface.DeviceInfo), PciID: pciID(r.Interface.DeviceInfo),
		})
		for _, ip := range slices.Concat(r.IPs, r.Interface.IPs) {
			c := &current.IPConfig{Interface: current.Int(idx), Address: *ipNet(ip.Address)}
			if ip.Gateway.IsValid() {
				c.Gateway = ip.Gateway.AsSlice()
			}
			res.IPs = append(res.IPs, c)
		}
		for _, rt := range r.Routes {
			res.Routes = append(res.Routes, cniRoute(rt.Dst, rt.GW))
		}
		if r.DefaultRoute {
			for _, gw := range r.Gateways() {
				res.Routes = append(res.Routes, cniRoute(netip.Prefix{}, gw))
			}
		}
	}
	version := rec.CNIVersion
	if version == "" {
		version = current.ImplementedSpecVersion
	}
	out, err := res.GetAsVersion(version)
	if err != nil {
		return nil, attach.Errorf(attach.CodeIncompatibleVersion, "convert result to cniVersion %s: %v", version, err)
	}
	data, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encode result: %w", err)
	}
	return data, nil
}

func socketPath(d *api.DeviceInfo) string {
	switch {
	case d == nil:
	case d.VhostUser != nil:
		return d.VhostUser.Path
	case d.Memif != nil:
		return d.Memif.Path
	}
	return ""
}

func pciID(d *api.DeviceInfo) string {
	if d != nil && d.PCI != nil {
		return d.PCI.PCIAddress
	}
	return ""
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func cniRoute(dst netip.Prefix, gw netip.Addr) *types.Route {
	if !dst.IsValid() {
		dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if gw.Is6() {
			dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
	}
	r := &types.Route{Dst: *ipNet(dst)}
	if gw.IsValid() {
		r.GW = gw.AsSlice()
	}
	return r
}

// NetworkStatus is the NPWG network-status of an attachment.
func NetworkStatus(rec *Attachment) []api.NetworkStatus {
	out := make([]api.NetworkStatus, 0, len(rec.Interfaces))
	for _, r := range rec.Interfaces {
		st := api.NetworkStatus{
			Name: r.Network.Key(), Interface: r.IfName, MAC: r.Interface.MAC,
			Default: r.DefaultRoute, DeviceInfo: r.Interface.DeviceInfo,
		}
		if r.Network.Namespace == "" && rec.Pod.Namespace != "" {
			st.Name = r.Network.Name
		}
		for _, ip := range slices.Concat(r.IPs, r.Interface.IPs) {
			st.IPs = append(st.IPs, ip.Address.Addr().String())
		}
		out = append(out, st)
	}
	return out
}
