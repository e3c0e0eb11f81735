package vppagent

import (
	"context"
	"fmt"

	"go.fd.io/govpp/binapi/interface_types"
	"go.fd.io/govpp/binapi/memif"
	"go.fd.io/govpp/binapi/vhost_user"
)

func (v *vpp) memifSocketAdd(ctx context.Context, filename string) (uint32, error) {
	c := memif.NewServiceClient(v.conn)
	r, err := c.MemifSocketFilenameAddDelV2(ctx, &memif.MemifSocketFilenameAddDelV2{IsAdd: true, SocketID: invalidIndex, SocketFilename: filename})
	if err != nil {
		return 0, fmt.Errorf("add memif socket %q: %w", filename, err)
	}
	return r.SocketID, nil
}

func (v *vpp) memifSocketDel(ctx context.Context, id uint32) error {
	c := memif.NewServiceClient(v.conn)
	if _, err := c.MemifSocketFilenameAddDelV2(ctx, &memif.MemifSocketFilenameAddDelV2{IsAdd: false, SocketID: id}); err != nil {
		return fmt.Errorf("delete memif socket %d: %w", id, err)
	}
	return nil
}

func (v *vpp) memifSockets(ctx context.Context) (map[uint32]string, error) {
	c := memif.NewServiceClient(v.conn)
	s, err := c.MemifSocketFilenameDump(ctx, &memif.MemifSocketFilenameDump{})
	if err != nil {
		return nil, fmt.Errorf("dump memif sockets: %w", err)
	}
	out := map[uint32]string{}
	if err := drain(s.Recv, func(d *memif.MemifSocketFilenameDetails) { out[d.SocketID] = d.SocketFilename }); err != nil {
		return nil, fmt.Errorf("dump memif sockets: %w", err)
	}
	return out, nil
}

// memifSocketOf maps each memif interface (sw_if_index) to its socket id.
func (v *vpp) memifSocketOf(ctx context.Context) (map[uint32]uint32, error) {
	c := memif.NewServiceClient(v.conn)
	s, err := c.MemifDump(ctx, &memif.MemifDump{})
	if err != nil {
		return nil, fmt.Errorf("dump memif interfaces: %w", err)
	}
	out := map[uint32]uint32{}
	if err := drain(s.Recv, func(d *memif.MemifDetails) { out[uint32(d.SwIfIndex)] = d.SocketID }); err != nil {
		return nil, fmt.Errorf("dump memif interfaces: %w", err)
	}
	return out, nil
}

func (v *vpp) memifCreate(ctx context.Context, socketID, id uint32, o MemifOptions) (uint32, error) {
	mode := memif.MEMIF_MODE_API_ETHERNET
	if o.Mode == MemifModeIP {
		mode = memif.MEMIF_MODE_API_IP
	}
	c := memif.NewServiceClient(v.conn)
	r, err := c.MemifCreateV2(ctx, &memif.MemifCreateV2{
		Role: memif.MEMIF_ROLE_API_MASTER, Mode: mode,
		RxQueues: uint8(o.Queues), TxQueues: uint8(o.Queues),
		ID: id, SocketID: socketID, RingSize: uint32(o.RingSize), BufferSize: uint16(o.BufferSize),
	})
	if err != nil {
		return 0, fmt.Errorf("create memif id %d on socket %d: %w", id, socketID, err)
	}
	return uint32(r.SwIfIndex), nil
}

func (v *vpp) memifDelete(ctx context.Context, idx uint32) error {
	c := memif.NewServiceClient(v.conn)
	if _, err := c.MemifDelete(ctx, &memif.MemifDelete{SwIfIndex: interface_types.InterfaceIndex(idx)}); err != nil {
		return fmt.Errorf("delete memif %d: %w", idx, err)
	}
	return nil
}

func (v *vpp) vhostCreate(ctx context.Context, path string, server bool, tag string) (uint32, error) {
	c := vhost_user.NewServiceClient(v.conn)
	r, err := c.CreateVhostUserIfV2(ctx, &vhost_user.CreateVhostUserIfV2{IsServer: server, SockFilename: path, Tag: tag})
	if err != nil {
		return 0, fmt.Errorf("create vhost-user %s (server=%v): %w", path, server, err)
	}
	return uint32(r.SwIfIndex), nil
}

func (v *vpp) vhostDelete(ctx context.Context, idx uint32) error {
	c := vhost_user.NewServiceClient(v.conn)
	if _, err := c.DeleteVhostUserIf(ctx, &vhost_user.DeleteVhostUserIf{SwIfIndex: interface_types.InterfaceIndex(idx)}); err != nil {
		return fmt.Errorf("delete vhost-user %d: %w", idx, err)
	}
	return nil
}
