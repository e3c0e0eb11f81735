package memif

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// ctl wraps the SOCK_SEQPACKET control connection: one message per packet,
// at most one file descriptor attached.
type ctl struct {
	c   *net.UnixConn
	buf [msgSize]byte
	oob []byte
}

func newCtl(c *net.UnixConn) *ctl {
	return &ctl{c: c, oob: make([]byte, unix.CmsgSpace(4*4))}
}

func (k *ctl) send(m *msg, fd int) error {
	var b [msgSize]byte
	m.encode(&b)
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	n, _, err := k.c.WriteMsgUnix(b[:], oob, nil)
	if err != nil {
		return fmt.Errorf("send %v: %w", m.typ, err)
	}
	if n != msgSize {
		return fmt.Errorf("send %v: short write %d", m.typ, n)
	}
	return nil
}

// recv reads one message and the fd attached to it (-1 if none). Any fds
// beyond the first, or attached to a message that is then rejected, are
// closed here so that a hostile peer cannot make us leak descriptors.
func (k *ctl) recv() (msg, int, error) {
	n, oobn, flags, _, err := k.c.ReadMsgUnix(k.buf[:], k.oob)
	if err != nil {
		return msg{}, -1, err
	}
	fd := -1
	var fdErr error
	if oobn > 0 {
		fds, err := parseRights(k.oob[:oobn])
		if err != nil {
			fdErr = fmt.Errorf("%w: %v", errBadMsg, err)
		}
		for i, f := range fds {
			if i == 0 && fdErr == nil {
				fd = f
				continue
			}
			unix.Close(f)
		}
		if len(fds) > 1 && fdErr == nil {
			fdErr = fmt.Errorf("%w: %d file descriptors in one message", errBadMsg, len(fds))
		}
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 && fdErr == nil {
		fdErr = fmt.Errorf("%w: truncated message or control data", errBadMsg)
	}
	if n == 0 && oobn == 0 && err == nil {
		// A zero-length read on SOCK_SEQPACKET is the peer closing.
		return msg{}, -1, errPeerClosed
	}
	m, err := decodeMsg(k.buf[:n])
	if err == nil {
		err = fdErr
	}
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return m, -1, err
	}
	return m, fd, nil
}

var errPeerClosed = errors.New("peer closed the control socket")

func parseRights(oob []byte) ([]int, error) {
	cmsgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("parse control data: %w", err)
	}
	var fds []int
	var perr error
	for i := range cmsgs {
		f, err := unix.ParseUnixRights(&cmsgs[i])
		if err != nil {
			perr = fmt.Errorf("unexpected control message: %w", err)
			continue
		}
		fds = append(fds, f...)
	}
	return fds, perr
}

// inNetns runs f with the calling goroutine's thread in the network
// namespace at path (or where it is, if path is empty). Sockets created by f
// stay in that namespace after we switch back.
func inNetns(path string, f func() error) error {
	if path == "" {
		return f()
	}
	errc := make(chan error, 1)
	// A dedicated goroutine, locked to its thread: if switching back fails
	// the thread is left locked and the runtime discards it on exit.
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open current netns: %w", err)
			return
		}
		defer orig.Close()
		target, err := os.Open(path)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open netns %s: %w", path, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns %s: %w", path, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("return from netns: %w", err))
			return // thread stays locked and dies with the goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

func dialCtl(ctx context.Context, cfg *Config) (*net.UnixConn, error) {
	var c *net.UnixConn
	err := inNetns(cfg.Netns, func() error {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "unixpacket", sockAddr(cfg.Socket))
		if err != nil {
			return err
		}
		c = nc.(*net.UnixConn)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("memif: dial %s: %w", cfg.Socket, err)
	}
	return c, nil
}

func listenCtl(cfg *Config) (*net.UnixListener, error) {
	addr := sockAddr(cfg.Socket)
	var l *net.UnixListener
	err := inNetns(cfg.Netns, func() error {
		if addr[0] != '@' {
			// A stale socket file from an earlier run blocks bind; remove it
			// only if nobody answers on it.
			if st, err := os.Lstat(addr); err == nil && st.Mode()&os.ModeSocket != 0 {
				if c, err := net.DialTimeout("unixpacket", addr, time.Second); err == nil {
					c.Close()
					return fmt.Errorf("socket %s is in use", addr)
				}
				_ = os.Remove(addr)
			}
		}
		var err error
		l, err = net.ListenUnix("unixpacket", &net.UnixAddr{Name: addr, Net: "unixpacket"})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("memif: listen %s: %w", cfg.Socket, err)
	}
	return l, nil
}
