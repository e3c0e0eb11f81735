package vppagent

import (
	"context"
	"fmt"

	"go.fd.io/govpp/binapi/acl"
	"go.fd.io/govpp/binapi/acl_types"
	"go.fd.io/govpp/binapi/interface_types"
)

// aclAddReplace sets the rules of ACL idx, or creates an ACL when idx is
// invalidIndex, and returns its index.
func (v *vpp) aclAddReplace(ctx context.Context, idx uint32, tag string, rules []acl_types.ACLRule) (uint32, error) {
	c := acl.NewServiceClient(v.conn)
	r, err := c.ACLAddReplace(ctx, &acl.ACLAddReplace{ACLIndex: idx, Tag: tag, Count: uint32(len(rules)), R: rules})
	if err != nil {
		return 0, fmt.Errorf("add or replace ACL %q: %w", tag, err)
	}
	return r.ACLIndex, nil
}

func (v *vpp) aclDel(ctx context.Context, idx uint32) error {
	c := acl.NewServiceClient(v.conn)
	if _, err := c.ACLDel(ctx, &acl.ACLDel{ACLIndex: idx}); err != nil {
		return fmt.Errorf("delete ACL %d: %w", idx, err)
	}
	return nil
}

// acls lists every ACL by index with its tag.
func (v *vpp) acls(ctx context.Context) (map[uint32]string, error) {
	c := acl.NewServiceClient(v.conn)
	s, err := c.ACLDump(ctx, &acl.ACLDump{ACLIndex: invalidIndex})
	if err != nil {
		return nil, fmt.Errorf("dump ACLs: %w", err)
	}
	out := map[uint32]string{}
	if err := drain(s.Recv, func(d *acl.ACLDetails) { out[d.ACLIndex] = d.Tag }); err != nil {
		return nil, fmt.Errorf("dump ACLs: %w", err)
	}
	return out, nil
}

// setACLs applies input then output ACLs to an interface (replacing any).
func (v *vpp) setACLs(ctx context.Context, idx uint32, in, out []uint32) error {
	c := acl.NewServiceClient(v.conn)
	list := append(append([]uint32{}, in...), out...)
	_, err := c.ACLInterfaceSetACLList(ctx, &acl.ACLInterfaceSetACLList{
		SwIfIndex: interface_types.InterfaceIndex(idx), Count: uint8(len(list)), NInput: uint8(len(in)), Acls: list})
	if err != nil {
		return fmt.Errorf("apply ACLs to interface %d: %w", idx, err)
	}
	return nil
}
