package vppagent

import (
	"context"
	"fmt"

	interfaces "go.fd.io/govpp/binapi/interface"
	"go.fd.io/govpp/binapi/interface_types"
	"go.fd.io/govpp/binapi/l2"
)

func (v *vpp) bridgeDomains(ctx context.Context) (map[uint32]string, error) {
	c := l2.NewServiceClient(v.conn)
	s, err := c.BridgeDomainDump(ctx, &l2.BridgeDomainDump{BdID: invalidIndex, SwIfIndex: interface_types.InterfaceIndex(invalidIndex)})
	if err != nil {
		return nil, fmt.Errorf("dump bridge domains: %w", err)
	}
	out := map[uint32]string{}
	if err := drain(s.Recv, func(d *l2.BridgeDomainDetails) { out[d.BdID] = d.BdTag }); err != nil {
		return nil, fmt.Errorf("dump bridge domains: %w", err)
	}
	return out, nil
}

// bdMembers lists the interfaces in bridge domain id.
func (v *vpp) bdMembers(ctx context.Context, id uint32) ([]uint32, error) {
	c := l2.NewServiceClient(v.conn)
	s, err := c.BridgeDomainDump(ctx, &l2.BridgeDomainDump{BdID: id, SwIfIndex: interface_types.InterfaceIndex(invalidIndex)})
	if err != nil {
		return nil, fmt.Errorf("dump bridge domain %d: %w", id, err)
	}
	var out []uint32
	err = drain(s.Recv, func(d *l2.BridgeDomainDetails) {
		for _, m := range d.SwIfDetails {
			out = append(out, uint32(m.SwIfIndex))
		}
	})
	if err != nil {
		return nil, fmt.Errorf("dump bridge domain %d: %w", id, err)
	}
	return out, nil
}

func (v *vpp) bridgeDomainAdd(ctx context.Context, id uint32, tag string) error {
	c := l2.NewServiceClient(v.conn)
	_, err := c.BridgeDomainAddDelV2(ctx, &l2.BridgeDomainAddDelV2{BdID: id, IsAdd: true, Flood: true, UuFlood: true, Forward: true, Learn: true, BdTag: tag})
	if err != nil {
		return fmt.Errorf("add bridge domain %d %q: %w", id, tag, err)
	}
	return nil
}

func (v *vpp) bridgeDomainDel(ctx context.Context, id uint32) error {
	c := l2.NewServiceClient(v.conn)
	if _, err := c.BridgeDomainAddDelV2(ctx, &l2.BridgeDomainAddDelV2{BdID: id, IsAdd: false}); err != nil {
		return fmt.Errorf("delete bridge domain %d: %w", id, err)
	}
	return nil
}

func (v *vpp) setBridge(ctx context.Context, idx, bd uint32, enable bool) error {
	c := l2.NewServiceClient(v.conn)
	if _, err := c.SwInterfaceSetL2Bridge(ctx, &l2.SwInterfaceSetL2Bridge{RxSwIfIndex: interface_types.InterfaceIndex(idx), BdID: bd, Enable: enable}); err != nil {
		return fmt.Errorf("put interface %d in bridge domain %d (enable=%v): %w", idx, bd, enable, err)
	}
	return nil
}

// vtrPop1 is VPP's L2_VTR_POP_1: strip the dot1q tag on ingress and push it
// back on egress, so that pods in the bridge domain see untagged frames.
const vtrPop1 = 3

func (v *vpp) popTag(ctx context.Context, idx uint32) error {
	c := l2.NewServiceClient(v.conn)
	if _, err := c.L2InterfaceVlanTagRewrite(ctx, &l2.L2InterfaceVlanTagRewrite{SwIfIndex: interface_types.InterfaceIndex(idx), VtrOp: vtrPop1, PushDot1q: 1}); err != nil {
		return fmt.Errorf("set tag rewrite pop 1 on %d: %w", idx, err)
	}
	return nil
}

func (v *vpp) createVLAN(ctx context.Context, parent uint32, vlan int) (uint32, error) {
	c := interfaces.NewServiceClient(v.conn)
	r, err := c.CreateVlanSubif(ctx, &interfaces.CreateVlanSubif{SwIfIndex: interface_types.InterfaceIndex(parent), VlanID: uint32(vlan)})
	if err != nil {
		return 0, fmt.Errorf("create dot1q %d sub-interface on %d: %w", vlan, parent, err)
	}
	return uint32(r.SwIfIndex), nil
}

func (v *vpp) deleteSubif(ctx context.Context, idx uint32) error {
	c := interfaces.NewServiceClient(v.conn)
	if _, err := c.DeleteSubif(ctx, &interfaces.DeleteSubif{SwIfIndex: interface_types.InterfaceIndex(idx)}); err != nil {
		return fmt.Errorf("delete sub-interface %d: %w", idx, err)
	}
	return nil
}
