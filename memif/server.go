package memif

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Listener is a memif server socket. It serves one or more interface IDs;
// each ID can have one connected client at a time. Accept returns every
// interface that comes up; after a client disconnects, the same ID can be
// connected again (reconnect).
type Listener struct {
	ul     *net.UnixListener
	mu     sync.Mutex
	ifaces map[uint32]*slot
	conns  chan *Conn
	quit   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
	sock   string
	cfg    Config // Listen's: the socket's name, logger and handshake timeout
}

type slot struct {
	cfg  Config
	busy bool
}

// Listen opens a memif server socket and serves the interface cfg
// describes (more can be added with Add). In server role the client decides
// ring and buffer sizes; cfg.Queues is the most queue pairs we accept.
func Listen(cfg Config) (*Listener, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ul, err := listenCtl(&cfg)
	if err != nil {
		return nil, err
	}
	l := &Listener{
		ul:     ul,
		ifaces: map[uint32]*slot{cfg.ID: {cfg: cfg}},
		conns:  make(chan *Conn),
		quit:   make(chan struct{}),
		sock:   cfg.Socket,
		cfg:    cfg,
	}
	l.wg.Add(1)
	go l.acceptLoop(cfg.Logger)
	return l, nil
}

// Add serves another interface ID on the same socket.
func (l *Listener) Add(cfg Config) error {
	cfg.Socket = l.sock
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, dup := l.ifaces[cfg.ID]; dup {
		return fmt.Errorf("memif: id %d already served on %s", cfg.ID, l.sock)
	}
	l.ifaces[cfg.ID] = &slot{cfg: cfg}
	return nil
}

// Accept waits for the next interface to come up. A client whose handshake
// has completed waits (connected, its frames queueing in the rings) until
// Accept takes it.
func (l *Listener) Accept(ctx context.Context) (*Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.quit:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close stops accepting. Connections already up stay up; close them
// yourself.
func (l *Listener) Close() error {
	l.once.Do(func() {
		close(l.quit)
		_ = l.ul.Close()
	})
	l.wg.Wait()
	return nil
}

func (l *Listener) acceptLoop(log *slog.Logger) {
	defer l.wg.Done()
	for {
		uc, err := l.ul.AcceptUnix()
		if err != nil {
			select {
			case <-l.quit:
				return
			default:
			}
			log.Warn("memif accept failed", "socket", l.sock, "err", err)
			select {
			case <-time.After(100 * time.Millisecond):
			case <-l.quit:
				return
			}
			continue
		}
		l.wg.Add(1)
		go l.serve(uc)
	}
}

// serve runs one client's handshake, bounded in time, then hands the
// connection to Accept.
func (l *Listener) serve(uc *net.UnixConn) {
	defer l.wg.Done()
	// Before INIT names the interface ID, HELLO must offer what any of the
	// socket's interfaces accepts: the most queues of them all. The chosen
	// interface's own limits apply once INIT arrives.
	l.mu.Lock()
	hello := l.cfg
	for _, s := range l.ifaces {
		hello.Queues = max(hello.Queues, s.cfg.Queues)
	}
	l.mu.Unlock()
	c := &Conn{cfg: hello, log: hello.Logger, ctl: newCtl(uc)}
	_ = uc.SetDeadline(time.Now().Add(hello.HandshakeTimeout))
	s, err := l.serverHandshake(c)
	if err != nil {
		// The interface ID is free again by now: tell the client why only
		// after that, so that it can retry at once.
		var r refused
		if errors.As(err, &r) {
			err = c.refuse(r.error)
		}
		c.log.Warn("memif client refused", "socket", l.sock, "err", err)
		c.release()
		return
	}
	_ = uc.SetDeadline(time.Time{})
	c.onDown = func() {
		l.mu.Lock()
		s.busy = false
		l.mu.Unlock()
	}
	if err := c.start(); err != nil {
		c.down(err.Error(), true)
		return
	}
	select {
	case l.conns <- c:
	case <-l.quit:
		_ = c.Close()
	}
}

func (l *Listener) serverHandshake(c *Conn) (s *slot, err error) {
	defer func() {
		if err != nil && s != nil {
			l.mu.Lock()
			s.busy = false
			l.mu.Unlock()
			s = nil
		}
	}()
	if err := c.ctl.send(&msg{typ: msgHello, name: c.cfg.Name, minVer: protoVer, maxVer: protoVer,
		maxRegion: maxRegions - 1, maxM2S: uint16(c.cfg.Queues - 1), maxS2M: uint16(c.cfg.Queues - 1),
		maxLog2Ring: maxLog2Ring}, -1); err != nil {
		return nil, err
	}
	m, err := c.expect(msgInit)
	if err != nil {
		return nil, err
	}
	if m.version != protoVer {
		return nil, refusal(fmt.Errorf("unsupported version %#x", m.version))
	}
	l.mu.Lock()
	s = l.ifaces[m.id]
	switch {
	case s == nil:
		l.mu.Unlock()
		return nil, refusal(fmt.Errorf("unknown interface id %d", m.id))
	case s.busy:
		s = nil
		l.mu.Unlock()
		return nil, refusal(fmt.Errorf("interface id %d already connected", m.id))
	}
	s.busy = true
	c.cfg = s.cfg
	c.log = s.cfg.Logger
	l.mu.Unlock()
	if m.mode != c.cfg.Mode {
		return s, refusal(fmt.Errorf("mode mismatch: client %v, server %v", m.mode, c.cfg.Mode))
	}
	if c.cfg.Secret != "" && subtle.ConstantTimeCompare([]byte(m.secret), []byte(c.cfg.Secret)) != 1 {
		return s, refusal(errors.New("incorrect secret"))
	}
	c.peerName = m.name
	if err := c.ctl.send(&msg{typ: msgAck}, -1); err != nil {
		return s, err
	}
	var s2m, m2s []*queue
	for {
		m, fd, err := c.ctl.recv()
		if err != nil {
			if errors.Is(err, errBadMsg) {
				return s, refusal(err)
			}
			return s, fmt.Errorf("handshake: %w", err)
		}
		switch m.typ {
		case msgAddRegion:
			err = c.addRegion(m, fd)
		case msgAddRing:
			var q *queue
			q, err = c.addRing(m, fd)
			if err == nil {
				if m.ringFlags&addRingS2M != 0 {
					s2m, err = putQueue(s2m, q, int(m.ringIndex))
				} else {
					m2s, err = putQueue(m2s, q, int(m.ringIndex))
				}
				if err != nil {
					unix.Close(q.evfd)
				}
			}
		case msgConnect:
			if fd >= 0 {
				unix.Close(fd)
			}
			c.rx, c.tx = s2m, m2s
			if err := c.checkRings(); err != nil {
				return s, refusal(err)
			}
			c.peerName = m.name
			c.evfiles = make([]*os.File, len(c.rx))
			if err := c.ctl.send(&msg{typ: msgConnected, name: c.cfg.Name}, -1); err != nil {
				return s, err
			}
			return s, nil
		case msgDisconnect:
			if fd >= 0 {
				unix.Close(fd)
			}
			return s, fmt.Errorf("client gave up: %s", m.reason)
		default:
			if fd >= 0 {
				unix.Close(fd)
			}
			err = fmt.Errorf("unexpected %v during handshake", m.typ)
		}
		if err != nil {
			// Rings added so far hold eventfds: release them with the conn.
			c.rx, c.tx = compact(s2m), compact(m2s)
			return s, refusal(err)
		}
		if err := c.ctl.send(&msg{typ: msgAck}, -1); err != nil {
			c.rx, c.tx = compact(s2m), compact(m2s)
			return s, err
		}
	}
}

func compact(qs []*queue) []*queue {
	var out []*queue
	for _, q := range qs {
		if q != nil {
			out = append(out, q)
		}
	}
	return out
}

func putQueue(qs []*queue, q *queue, i int) ([]*queue, error) {
	for len(qs) <= i {
		qs = append(qs, nil)
	}
	if qs[i] != nil {
		return qs, fmt.Errorf("ring %d added twice", i)
	}
	qs[i] = q
	return qs, nil
}

func (c *Conn) addRegion(m msg, fd int) error {
	if fd < 0 {
		return errors.New("ADD_REGION without a file descriptor")
	}
	if int(m.regionIndex) != len(c.regions) || len(c.regions) >= maxRegions {
		unix.Close(fd)
		return fmt.Errorf("ADD_REGION index %d, expected %d (max %d)", m.regionIndex, len(c.regions), maxRegions)
	}
	r, err := mapPeerRegion(fd, m.regionSize, c.cfg.AllowUnsealed)
	if err != nil {
		return fmt.Errorf("region %d: %w", m.regionIndex, err)
	}
	c.regions = append(c.regions, r)
	return nil
}

func (c *Conn) addRing(m msg, fd int) (*queue, error) {
	if fd < 0 {
		return nil, errors.New("ADD_RING without an interrupt eventfd")
	}
	bad := func(err error) (*queue, error) {
		unix.Close(fd)
		return nil, err
	}
	if m.ringFlags&^addRingS2M != 0 {
		return bad(fmt.Errorf("ADD_RING unknown flags %#x", m.ringFlags))
	}
	if int(m.ringIndex) >= c.cfg.Queues {
		return bad(fmt.Errorf("ADD_RING index %d beyond %d queues", m.ringIndex, c.cfg.Queues))
	}
	if m.log2Ring == 0 || m.log2Ring > maxLog2Ring {
		return bad(fmt.Errorf("ADD_RING log2 size %d out of range 1..%d", m.log2Ring, maxLog2Ring))
	}
	if int(m.ringRegion) >= len(c.regions) {
		return bad(fmt.Errorf("ADD_RING region %d not added", m.ringRegion))
	}
	mem := c.regions[m.ringRegion].mem
	if m.ringOffset%8 != 0 || uint64(m.ringOffset)+ringBytes(m.log2Ring) > uint64(len(mem)) {
		return bad(fmt.Errorf("ADD_RING offset %d (size %d) outside region %d of %d bytes or misaligned",
			m.ringOffset, ringBytes(m.log2Ring), m.ringRegion, len(mem)))
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return bad(fmt.Errorf("ADD_RING fd: %w", err))
	}
	q := &queue{
		r:       newRing(mem, m.ringOffset, m.log2Ring),
		regions: nil, // set at CONNECT, when all regions are known
		mtu:     c.cfg.MTU,
		evfd:    fd,
	}
	q.one[0] = 1
	q.chunks = make([]chunk, 0, 64)
	return q, nil
}

// checkRings runs at CONNECT: ring indexes must be dense, there must be at
// least one ring each way, and each ring must carry the memif cookie.
func (c *Conn) checkRings() error {
	if len(c.rx) == 0 || len(c.tx) == 0 {
		return fmt.Errorf("CONNECT with %d s2m and %d m2s rings", len(c.rx), len(c.tx))
	}
	for _, qs := range [][]*queue{c.rx, c.tx} {
		for i, q := range qs {
			if q == nil {
				return fmt.Errorf("ring %d missing", i)
			}
			if ck := q.r.cookie(); ck != ringCookie {
				return fmt.Errorf("ring %d has cookie %#x", i, ck)
			}
			q.regions = c.regions
		}
	}
	// Start every ring from zero, as DPDK's server does: DPDK's client
	// zeroes head and tail again when it gets CONNECTED, and may bring back
	// rings from an earlier connection (port stop/start) whose indexes we
	// must not resume from. Our client hands its buffers over again after
	// CONNECTED.
	for _, q := range append(append([]*queue{}, c.rx...), c.tx...) {
		q.r.setHead(0)
		q.r.setTail(0)
		q.head, q.tail, q.last = 0, 0, 0
	}
	for _, q := range c.tx {
		if cap(q.chunks) < int(q.r.size) {
			q.chunks = make([]chunk, 0, q.r.size)
		}
	}
	return nil
}

// refused marks a handshake error to be sent to the client as DISCONNECT.
type refused struct{ error }

func refusal(err error) error { return refused{err} }
