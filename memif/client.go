package memif

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Dial connects to a memif server (e.g. VPP) as the client. The client
// allocates the shared memory: one memfd region holding every ring and
// buffer, sent to the server over the control socket. Dial returns once the
// interface is up, or with the reason the server refused it.
func Dial(ctx context.Context, cfg Config) (*Conn, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.HandshakeTimeout)
	defer cancel()
	uc, err := dialCtl(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	c := &Conn{cfg: cfg, client: true, log: cfg.Logger, ctl: newCtl(uc)}
	if dl, ok := ctx.Deadline(); ok {
		_ = uc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = uc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := c.clientHandshake(); err != nil {
		c.release()
		return nil, fmt.Errorf("memif: connect %s id %d: %w", cfg.Socket, cfg.ID, err)
	}
	_ = uc.SetDeadline(time.Time{})
	if err := c.start(); err != nil {
		c.down(err.Error(), true)
		return nil, err
	}
	return c, nil
}

// expect reads the next message and fails unless it has type t. A
// DISCONNECT from the peer becomes the error, with the peer's reason.
func (c *Conn) expect(t msgType) (msg, error) {
	m, fd, err := c.ctl.recv()
	if err != nil {
		err = fmt.Errorf("waiting for %v: %w", t, err)
		if errors.Is(err, errBadMsg) {
			return m, c.refuse(err)
		}
		return m, err
	}
	if fd >= 0 {
		unix.Close(fd) // the server never sends fds
	}
	if m.typ == msgDisconnect {
		return m, fmt.Errorf("peer refused: %s (code %d)", m.reason, m.code)
	}
	if m.typ != t {
		return m, c.refuse(fmt.Errorf("got %v, want %v", m.typ, t))
	}
	return m, nil
}

func (c *Conn) clientHandshake() error {
	cfg := &c.cfg
	hello, err := c.expect(msgHello)
	if err != nil {
		return err
	}
	if hello.minVer > protoVer || hello.maxVer < protoVer {
		return c.refuse(fmt.Errorf("server speaks versions %#x..%#x, we speak %#x", hello.minVer, hello.maxVer, protoVer))
	}
	c.peerName = hello.name
	ns2m := min(cfg.Queues, int(hello.maxS2M)+1)
	nm2s := min(cfg.Queues, int(hello.maxM2S)+1)
	log2 := min(cfg.Log2RingSize, hello.maxLog2Ring)
	if log2 == 0 {
		return c.refuse(errors.New("server allows no ring size"))
	}
	if err := c.allocClient(ns2m, nm2s, log2); err != nil {
		return c.refuse(err)
	}

	steps := []struct {
		m  msg
		fd int
	}{{m: msg{typ: msgInit, version: protoVer, id: cfg.ID, mode: cfg.Mode, secret: cfg.Secret, name: cfg.Name}, fd: -1}}
	steps = append(steps, struct {
		m  msg
		fd int
	}{m: msg{typ: msgAddRegion, regionIndex: 0, regionSize: uint64(len(c.regions[0].mem))}, fd: c.regions[0].fd})
	ringOff := func(i int) uint32 { return uint32(uint64(i) * ringBytes(log2)) }
	for i, q := range c.tx {
		steps = append(steps, struct {
			m  msg
			fd int
		}{m: msg{typ: msgAddRing, ringFlags: addRingS2M, ringIndex: uint16(i), ringRegion: 0, ringOffset: ringOff(i), log2Ring: log2}, fd: q.evfd})
	}
	for i, q := range c.rx {
		steps = append(steps, struct {
			m  msg
			fd int
		}{m: msg{typ: msgAddRing, ringIndex: uint16(i), ringRegion: 0, ringOffset: ringOff(ns2m + i), log2Ring: log2}, fd: q.evfd})
	}
	for _, s := range steps {
		if err := c.ctl.send(&s.m, s.fd); err != nil {
			return err
		}
		if _, err := c.expect(msgAck); err != nil {
			return fmt.Errorf("after %v: %w", s.m.typ, err)
		}
	}
	if err := c.ctl.send(&msg{typ: msgConnect, name: cfg.Name}, -1); err != nil {
		return err
	}
	m, err := c.expect(msgConnected)
	if err != nil {
		return err
	}
	if m.name != "" {
		c.peerName = m.name
	}
	// Servers may reset head and tail while handling CONNECT (DPDK does):
	// hand the buffers over again if so. Nothing was consumed yet (last
	// is 0), and a server that did not reset may already be sending.
	for _, q := range c.rx {
		q.head = q.r.head()
		if q.head-q.last > q.r.size || q.r.tail()-q.last > q.head-q.last {
			return c.refuse(errors.New("server left a receive ring in an invalid state"))
		}
		q.refill()
	}
	for _, q := range c.tx {
		q.head = q.r.head()
		if q.head-q.r.tail() > q.r.size {
			return c.refuse(errors.New("server left a transmit ring in an invalid state"))
		}
	}
	return nil
}

// allocClient lays out region 0: the S2M rings, then the M2S rings, then
// (page aligned) one buffer per slot of every ring, ring by ring.
func (c *Conn) allocClient(ns2m, nm2s int, log2 uint8) error {
	cfg := &c.cfg
	slots := uint64(1) << log2
	nr := uint64(ns2m + nm2s)
	ringsEnd := nr * ringBytes(log2)
	bufBase := (ringsEnd + 4095) &^ 4095
	size := bufBase + nr*slots*uint64(cfg.BufferSize)
	if size > 1<<32-1 {
		return fmt.Errorf("region of %d bytes exceeds memif's 32-bit offsets; use fewer queues, smaller rings or buffers", size)
	}
	reg, err := newRegion("memif-"+cfg.Name, size)
	if err != nil {
		return err
	}
	c.regions = []*region{reg}
	mk := func(i int) (*queue, error) {
		q := &queue{
			client:  true,
			mem:     reg.mem,
			bufBase: uint32(bufBase + uint64(i)*slots*uint64(cfg.BufferSize)),
			bufSize: cfg.BufferSize,
			bufReg:  0,
			regions: c.regions,
			mtu:     cfg.MTU,
			evfd:    -1,
		}
		q.one[0] = 1
		q.r = newRing(reg.mem, uint32(uint64(i)*ringBytes(log2)), log2)
		q.r.init()
		fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
		if err != nil {
			return nil, fmt.Errorf("eventfd: %w", err)
		}
		q.evfd = fd
		return q, nil
	}
	for i := 0; i < ns2m; i++ {
		q, err := mk(i)
		if err != nil {
			return err
		}
		c.tx = append(c.tx, q)
	}
	for i := 0; i < nm2s; i++ {
		q, err := mk(ns2m + i)
		if err != nil {
			return err
		}
		// Hand every buffer of the receive ring to the server up front.
		q.refill()
		c.rx = append(c.rx, q)
	}
	c.evfiles = make([]*os.File, len(c.rx))
	return nil
}
