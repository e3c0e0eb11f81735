package memif

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Conn is one connected memif interface. Each queue may be used by one
// goroutine at a time (like a DPDK queue); different queues may be used in
// parallel. All methods are safe to call after the connection is down: the
// burst calls then return ErrClosed.
type Conn struct {
	cfg      Config
	client   bool
	log      *slog.Logger
	ctl      *ctl
	peerName string
	regions  []*region
	rx, tx   []*queue
	evfiles  []*os.File // eventfd wrappers for WaitRx, indexed like rx

	closing  atomic.Bool
	downOnce sync.Once
	done     chan struct{}
	reason   string // why it went down, valid once done is closed
	readerWG sync.WaitGroup
	onDown   func() // server: frees the interface ID for the next client
}

// PeerName is the interface name the peer announced.
func (c *Conn) PeerName() string { return c.peerName }

// NumRxQueues and NumTxQueues are the queue counts negotiated with the peer.
func (c *Conn) NumRxQueues() int { return len(c.rx) }

// NumTxQueues: see NumRxQueues.
func (c *Conn) NumTxQueues() int { return len(c.tx) }

// Config returns the configuration in effect, defaults filled in.
func (c *Conn) Config() Config { return c.cfg }

// Done is closed when the connection goes down, for any reason.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns why the connection went down, or nil while it is up.
func (c *Conn) Err() error {
	select {
	case <-c.done:
		return fmt.Errorf("%w: %s", ErrClosed, c.reason)
	default:
		return nil
	}
}

// RxBurst receives up to len(bufs) frames. Each bufs[i] must have capacity
// for the largest frame expected (its length is ignored); on return
// bufs[:n] are resliced to the received frames. Frames longer than their
// buffer are dropped and counted. It never blocks and does not allocate.
func (c *Conn) RxBurst(queue int, bufs [][]byte) (int, error) {
	if queue < 0 || queue >= len(c.rx) {
		return 0, ErrBadQueue
	}
	q := c.rx[queue]
	q.mu.Lock()
	if q.dead {
		q.mu.Unlock()
		return 0, ErrClosed
	}
	n, err := q.rx(bufs)
	q.mu.Unlock()
	if err == ErrPeerMisbehaved {
		c.down(fmt.Sprintf("rx queue %d: peer wrote an invalid descriptor or ring index", queue), true)
	}
	return n, err
}

// TxBurst transmits frames from pkts in order, copying them into the ring,
// and returns how many were queued. It stops early when the ring is full
// (err nil: retry later) or at a frame it cannot send (ErrFrameTooLarge:
// pkts[n] is the culprit). It never blocks and does not allocate.
func (c *Conn) TxBurst(queue int, pkts [][]byte) (int, error) {
	if queue < 0 || queue >= len(c.tx) {
		return 0, ErrBadQueue
	}
	q := c.tx[queue]
	q.mu.Lock()
	if q.dead {
		q.mu.Unlock()
		return 0, ErrClosed
	}
	var n int
	var err error
	if q.client {
		n, err = q.txClient(pkts)
	} else {
		n, err = q.txServer(pkts)
	}
	q.mu.Unlock()
	if err == ErrPeerMisbehaved {
		c.down(fmt.Sprintf("tx queue %d: peer wrote an invalid descriptor or ring index", queue), true)
	}
	return n, err
}

// WaitRx blocks until frames may be waiting on queue, ctx ends or the
// connection goes down. It needs Config.Interrupt (otherwise the peer is
// asked not to signal, and WaitRx only returns on ctx or teardown). Spurious
// wake-ups are possible: call RxBurst after it returns.
func (c *Conn) WaitRx(ctx context.Context, queue int) error {
	if queue < 0 || queue >= len(c.rx) {
		return ErrBadQueue
	}
	q := c.rx[queue]
	q.mu.Lock()
	if q.dead {
		q.mu.Unlock()
		return ErrClosed
	}
	ready := q.pending()
	q.mu.Unlock()
	if ready {
		return nil
	}
	f := c.evfiles[queue]
	stop := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	var b [8]byte
	_, err := f.Read(b[:])
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if c.closing.Load() {
			return ErrClosed
		}
		return fmt.Errorf("memif: wait rx queue %d: %w", queue, err)
	}
	return nil
}

// TxPending returns how many ring slots of tx queue the peer has not
// consumed yet (0 once everything sent has been received). A sender that
// is about to Close can wait for it to reach 0: closing tears the rings
// down, and frames still in them are lost.
func (c *Conn) TxPending(queue int) (int, error) {
	if queue < 0 || queue >= len(c.tx) {
		return 0, ErrBadQueue
	}
	q := c.tx[queue]
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.dead {
		return 0, ErrClosed
	}
	var n uint16
	if q.client {
		n = q.head - q.r.tail()
	} else {
		// The client hands a consumed buffer straight back by advancing
		// head: what it has not consumed is what it has not re-offered.
		n = q.tail - (q.r.head() - q.r.size)
	}
	if n > q.r.size {
		return 0, ErrPeerMisbehaved
	}
	return int(n), nil
}

// Stats returns the counters of every rx and tx queue.
func (c *Conn) Stats() (rx, tx []QueueStats) {
	for _, q := range c.rx {
		q.mu.Lock()
		rx = append(rx, q.stats)
		q.mu.Unlock()
	}
	for _, q := range c.tx {
		q.mu.Lock()
		tx = append(tx, q.stats)
		q.mu.Unlock()
	}
	return rx, tx
}

// Close disconnects (telling the peer why) and releases the shared memory.
func (c *Conn) Close() error {
	c.down("closed by local side", true)
	c.readerWG.Wait()
	return nil
}

// down tears the connection down once: tells the peer (if notify), stops
// the control reader, waits for bursts in flight, then unmaps and closes
// every fd. Safe from any goroutine, including the control reader.
func (c *Conn) down(reason string, notify bool) {
	c.downOnce.Do(func() {
		c.closing.Store(true)
		if notify && c.ctl != nil {
			_ = c.ctl.c.SetWriteDeadline(time.Now().Add(time.Second))
			_ = c.ctl.send(&msg{typ: msgDisconnect, code: 1, reason: reason}, -1)
		}
		if c.ctl != nil {
			_ = c.ctl.c.Close()
		}
		for _, q := range append(append([]*queue{}, c.rx...), c.tx...) {
			q.mu.Lock()
			q.dead = true
			q.mu.Unlock()
		}
		for _, f := range c.evfiles {
			if f != nil {
				f.Close()
			}
		}
		for _, q := range c.tx {
			// tx eventfds are not wrapped in files: close them here.
			if q.evfd >= 0 {
				unix.Close(q.evfd)
			}
		}
		for _, r := range c.regions {
			r.close()
		}
		c.reason = reason
		level := slog.LevelInfo
		if notify && reason != "closed by local side" {
			level = slog.LevelWarn
		}
		c.log.Log(context.Background(), level, "memif disconnected", "socket", c.cfg.Socket, "id", c.cfg.ID, "peer", c.peerName, "reason", reason)
		close(c.done)
		if c.onDown != nil {
			c.onDown()
		}
	})
}

// reader owns the control socket once the interface is up: the only
// message allowed then is DISCONNECT.
func (c *Conn) reader() {
	defer c.readerWG.Done()
	m, fd, err := c.ctl.recv()
	switch {
	case err != nil && c.closing.Load():
	case err != nil && errors.Is(err, errBadMsg):
		c.down(fmt.Sprintf("bad control message: %v", err), true)
	case err != nil:
		c.down(fmt.Sprintf("control socket: %v", err), false)
	case m.typ == msgDisconnect:
		c.down(fmt.Sprintf("peer disconnected: %s (code %d)", m.reason, m.code), false)
	default:
		c.down(fmt.Sprintf("unexpected %v while connected", m.typ), true)
	}
	if fd >= 0 {
		unix.Close(fd)
	}
}

// start runs after a successful handshake.
func (c *Conn) start() error {
	c.done = make(chan struct{})
	for i, q := range c.rx {
		// Polling receivers mask the peer's interrupts: an eventfd write per
		// burst costs a system call on the peer's fast path.
		if c.cfg.Interrupt {
			q.r.setFlags(0)
		} else {
			q.r.setFlags(ringFlagMask)
		}
		fd, err := unix.Dup(q.evfd)
		if err != nil {
			return fmt.Errorf("dup eventfd: %w", err)
		}
		_ = unix.SetNonblock(fd, true)
		c.evfiles[i] = os.NewFile(uintptr(fd), "memif-eventfd")
		unix.Close(q.evfd)
		q.evfd = -1
	}
	c.readerWG.Add(1)
	go c.reader()
	c.log.Info("memif connected", "socket", c.cfg.Socket, "id", c.cfg.ID, "role", c.roleName(), "peer", c.peerName,
		"rxq", len(c.rx), "txq", len(c.tx), "mode", c.cfg.Mode.String())
	return nil
}

func (c *Conn) roleName() string {
	if c.client {
		return "client"
	}
	return "server"
}

// release frees everything a failed handshake created.
func (c *Conn) release() {
	for _, q := range append(append([]*queue{}, c.rx...), c.tx...) {
		if q != nil && q.evfd >= 0 {
			unix.Close(q.evfd)
			q.evfd = -1
		}
	}
	for _, r := range c.regions {
		r.close()
	}
	c.regions = nil
	if c.ctl != nil {
		_ = c.ctl.c.Close()
	}
}

// refuse tells the peer why we give up (best effort) and returns err.
func (c *Conn) refuse(err error) error {
	_ = c.ctl.c.SetWriteDeadline(time.Now().Add(time.Second))
	reason := err.Error()
	if len(reason) > reasonLen-1 {
		reason = reason[:reasonLen-1]
	}
	_ = c.ctl.send(&msg{typ: msgDisconnect, code: 1, reason: reason}, -1)
	return err
}
