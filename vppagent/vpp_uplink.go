package vppagent

import (
	"context"
	"fmt"

	afpacket "go.fd.io/govpp/binapi/af_packet"
	afxdp "go.fd.io/govpp/binapi/af_xdp"
	"go.fd.io/govpp/binapi/avf"
	"go.fd.io/govpp/binapi/interface_types"
)

func (v *vpp) afPacketCreate(ctx context.Context, host string) (uint32, error) {
	c := afpacket.NewServiceClient(v.conn)
	r, err := c.AfPacketCreateV3(ctx, &afpacket.AfPacketCreateV3{Mode: afpacket.AF_PACKET_API_MODE_ETHERNET, HostIfName: host, UseRandomHwAddr: true, NumRxQueues: 1, NumTxQueues: 1})
	if err != nil {
		return 0, fmt.Errorf("create af_packet on host interface %s: %w", host, err)
	}
	return uint32(r.SwIfIndex), nil
}

func (v *vpp) afPacketDelete(ctx context.Context, host string) error {
	c := afpacket.NewServiceClient(v.conn)
	if _, err := c.AfPacketDelete(ctx, &afpacket.AfPacketDelete{HostIfName: host}); err != nil {
		return fmt.Errorf("delete af_packet %s: %w", host, err)
	}
	return nil
}

func (v *vpp) afXDPCreate(ctx context.Context, host, name string) (uint32, error) {
	c := afxdp.NewServiceClient(v.conn)
	r, err := c.AfXdpCreateV3(ctx, &afxdp.AfXdpCreateV3{HostIf: host, Name: name, RxqNum: 1})
	if err != nil {
		return 0, fmt.Errorf("create af_xdp on host interface %s: %w", host, err)
	}
	return uint32(r.SwIfIndex), nil
}

func (v *vpp) afXDPDelete(ctx context.Context, idx uint32) error {
	c := afxdp.NewServiceClient(v.conn)
	if _, err := c.AfXdpDelete(ctx, &afxdp.AfXdpDelete{SwIfIndex: interface_types.InterfaceIndex(idx)}); err != nil {
		return fmt.Errorf("delete af_xdp %d: %w", idx, err)
	}
	return nil
}

func (v *vpp) avfCreate(ctx context.Context, pci string) (uint32, error) {
	addr, err := pciToU32(pci)
	if err != nil {
		return 0, err
	}
	c := avf.NewServiceClient(v.conn)
	r, err := c.AvfCreate(ctx, &avf.AvfCreate{PciAddr: addr, RxqNum: 1})
	if err != nil {
		// VPP's log holds the cause (no such device, not on vfio-pci, not
		// an Intel AVF).
		return 0, fmt.Errorf("create avf on %s (VPP opens the VF through vfio-pci; its log says why it could not): %w", pci, err)
	}
	return uint32(r.SwIfIndex), nil
}

func (v *vpp) avfDelete(ctx context.Context, idx uint32) error {
	c := avf.NewServiceClient(v.conn)
	if _, err := c.AvfDelete(ctx, &avf.AvfDelete{SwIfIndex: interface_types.InterfaceIndex(idx)}); err != nil {
		return fmt.Errorf("delete avf %d: %w", idx, err)
	}
	return nil
}

// pciToU32 packs "dddd:bb:ss.f" the way VPP's vlib_pci_addr_t is laid out
// (domain:16 bus:8 slot:5 function:3, little-endian on the wire).
func pciToU32(s string) (uint32, error) {
	var dom, bus, slot, fn uint32
	if _, err := fmt.Sscanf(s, "%x:%x:%x.%x", &dom, &bus, &slot, &fn); err != nil {
		return 0, fmt.Errorf("parse PCI address %q: %w", s, err)
	}
	if dom > 0xffff || bus > 0xff || slot > 0x1f || fn > 7 {
		return 0, fmt.Errorf("PCI address %q out of range", s)
	}
	return dom | bus<<16 | slot<<24 | fn<<29, nil
}
