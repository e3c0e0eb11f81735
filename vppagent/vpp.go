package vppagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"go.fd.io/govpp/api"
	interfaces "go.fd.io/govpp/binapi/interface"
	"go.fd.io/govpp/binapi/interface_types"
	"go.fd.io/govpp/binapi/vlib"
)

// vpp wraps one API connection with the typed calls the agent makes.
// Every call checks VPP's retval (the generated RPC clients do) and wraps
// errors with what was being done.
type vpp struct {
	conn api.Connection
}

const invalidIndex = ^uint32(0)

// swIf is the part of an interface dump the agent reasons about.
type swIf struct {
	Index  uint32
	Name   string
	Tag    string
	DevTyp string
	Sup    uint32
	SubID  uint32
	Flags  interface_types.IfStatusFlags
}

func (v *vpp) dumpInterfaces(ctx context.Context) ([]swIf, error) {
	c := interfaces.NewServiceClient(v.conn)
	s, err := c.SwInterfaceDump(ctx, &interfaces.SwInterfaceDump{SwIfIndex: interface_types.InterfaceIndex(invalidIndex)})
	if err != nil {
		return nil, fmt.Errorf("dump interfaces: %w", err)
	}
	var out []swIf
	err = drain(s.Recv, func(d *interfaces.SwInterfaceDetails) {
		out = append(out, swIf{Index: uint32(d.SwIfIndex), Name: d.InterfaceName, Tag: d.Tag,
			DevTyp: d.InterfaceDevType, Sup: d.SupSwIfIndex, SubID: d.SubID, Flags: d.Flags})
	})
	if err != nil {
		return nil, fmt.Errorf("dump interfaces: %w", err)
	}
	return out, nil
}

func (v *vpp) setTag(ctx context.Context, idx uint32, tag string) error {
	c := interfaces.NewServiceClient(v.conn)
	if _, err := c.SwInterfaceTagAddDel(ctx, &interfaces.SwInterfaceTagAddDel{IsAdd: true, SwIfIndex: interface_types.InterfaceIndex(idx), Tag: tag}); err != nil {
		return fmt.Errorf("tag interface %d %q: %w", idx, tag, err)
	}
	return nil
}

func (v *vpp) setUp(ctx context.Context, idx uint32, up bool) error {
	var f interface_types.IfStatusFlags
	if up {
		f = interface_types.IF_STATUS_API_FLAG_ADMIN_UP
	}
	c := interfaces.NewServiceClient(v.conn)
	if _, err := c.SwInterfaceSetFlags(ctx, &interfaces.SwInterfaceSetFlags{SwIfIndex: interface_types.InterfaceIndex(idx), Flags: f}); err != nil {
		return fmt.Errorf("set interface %d admin up=%v: %w", idx, up, err)
	}
	return nil
}

func (v *vpp) setMTU(ctx context.Context, idx uint32, mtu int) error {
	c := interfaces.NewServiceClient(v.conn)
	m := uint32(mtu)
	if _, err := c.SwInterfaceSetMtu(ctx, &interfaces.SwInterfaceSetMtu{SwIfIndex: interface_types.InterfaceIndex(idx), Mtu: []uint32{m, m, m, m}}); err != nil {
		return fmt.Errorf("set interface %d mtu %d: %w", idx, mtu, err)
	}
	return nil
}

// cli runs a debug CLI command (telcnictl passthrough, tests).
func (v *vpp) cli(ctx context.Context, cmd string) (string, error) {
	c := vlib.NewServiceClient(v.conn)
	r, err := c.CliInband(ctx, &vlib.CliInband{Cmd: cmd})
	if err != nil {
		return "", fmt.Errorf("vpp cli %q: %w", cmd, err)
	}
	return r.Reply, nil
}

// isAlreadyExists is true for VPP's "already exists" retvals (entry, bridge
// domain, address on this interface), which idempotent re-application
// (reconcile, a second pod on a network) expects. An address in use on
// another interface is a real conflict and stays an error.
func isAlreadyExists(err error) bool {
	var ve api.VPPApiError
	if errors.As(err, &ve) {
		switch ve {
		case api.VALUE_EXIST, api.DUPLICATE_IF_ADDRESS, api.ENTRY_ALREADY_EXISTS, api.BD_ALREADY_EXISTS, api.ADDRESS_FOUND_FOR_INTERFACE:
			return true
		}
		return false
	}
	return strings.Contains(err.Error(), "already exists")
}

// drain reads a dump's replies to the end of the stream, handing each to
// fn. govpp ends a dump stream with io.EOF.
func drain[D any](recv func() (D, error), fn func(D)) error {
	for {
		d, err := recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		fn(d)
	}
}
