// Package sctptest opens multi-homed SCTP associations for tests. Go's
// standard library has no SCTP, so it speaks the Linux socket API directly
// (one-to-one SOCK_STREAM sockets, sctp_bindx and sctp_connectx through
// their setsockopt forms, include/uapi/linux/sctp.h).
package sctptest

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/telcni/telcni/internal/netnstest"
)

const (
	solSCTP      = 132
	bindxAdd     = 100 // SCTP_SOCKOPT_BINDX_ADD
	connectx     = 110 // SCTP_SOCKOPT_CONNECTX
	getPeerAddrs = 108 // SCTP_GET_PEER_ADDRS
	primaryAddr  = 6   // SCTP_PRIMARY_ADDR
	peerAddrInfo = 15  // SCTP_GET_PEER_ADDR_INFO
	sockaddrLen  = 16
	storageLen   = 128 // sizeof(struct sockaddr_storage)
	// StateActive is a confirmed path (enum sctp_spinfo_state SCTP_ACTIVE).
	StateActive = 2
)

func sockaddr4(a netip.Addr, port uint16) []byte {
	b := make([]byte, sockaddrLen)
	binary.NativeEndian.PutUint16(b[0:], unix.AF_INET)
	binary.BigEndian.PutUint16(b[2:], port)
	ip := a.As4()
	copy(b[4:8], ip[:])
	return b
}

func packed(addrs []netip.Addr, port uint16) []byte {
	var out []byte
	for _, a := range addrs {
		out = append(out, sockaddr4(a, port)...)
	}
	return out
}

// socket opens an SCTP socket in the netns at path bound to every address
// of local (IPv4) on port.
func socket(netns string, local []netip.Addr, port uint16) (int, error) {
	fd := -1
	err := netnstest.Do(netns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_SCTP)
		return err
	})
	if err != nil {
		return -1, fmt.Errorf("SCTP socket in %s: %w", netns, err)
	}
	if err := unix.SetsockoptString(fd, solSCTP, bindxAdd, string(packed(local, port))); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("sctp_bindx %v: %w", local, err)
	}
	tv := unix.Timeval{Sec: 10}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	return fd, nil
}

// Listen returns a listening socket bound to local:port in netns.
func Listen(netns string, local []netip.Addr, port uint16) (int, error) {
	fd, err := socket(netns, local, port)
	if err != nil {
		return -1, err
	}
	if err := unix.Listen(fd, 4); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("listen: %w", err)
	}
	return fd, nil
}

// Dial opens an association from local (in netns) to every address of
// remote on port.
func Dial(netns string, local, remote []netip.Addr, port uint16) (int, error) {
	fd, err := socket(netns, local, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.SetsockoptString(fd, solSCTP, connectx, string(packed(remote, port))); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("sctp_connectx %v: %w", remote, err)
	}
	return fd, nil
}

// Accept waits for an association on a listening socket.
func Accept(fd int) (int, error) {
	nfd, err := retry(func() (int, error) { nfd, _, err := unix.Accept(fd); return nfd, err })
	if err != nil {
		return -1, fmt.Errorf("accept: %w", err)
	}
	tv := unix.Timeval{Sec: 10}
	_ = unix.SetsockoptTimeval(nfd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	return nfd, nil
}

// PeerAddrs lists the peer addresses of fd's association.
func PeerAddrs(fd int) ([]netip.Addr, error) {
	buf := make([]byte, 8+8*sockaddrLen) // struct sctp_getaddrs with room for 8
	l := uint32(len(buf))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), solSCTP, getPeerAddrs,
		uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&l)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("SCTP_GET_PEER_ADDRS: %w", errno)
	}
	n := int(binary.NativeEndian.Uint32(buf[4:8]))
	var out []netip.Addr
	for i := 0; i < n && 8+(i+1)*sockaddrLen <= int(l); i++ {
		sa := buf[8+i*sockaddrLen:]
		if binary.NativeEndian.Uint16(sa) == unix.AF_INET {
			out = append(out, netip.AddrFrom4([4]byte(sa[4:8])))
		}
	}
	return out, nil
}

// Exchange sends msg on from and reads it back on to.
func Exchange(from, to int, msg string) error {
	if _, err := retry(func() (int, error) { return unix.Write(from, []byte(msg)) }); err != nil {
		return fmt.Errorf("send %q: %w", msg, err)
	}
	buf := make([]byte, 256)
	n, err := retry(func() (int, error) { return unix.Read(to, buf) })
	if err != nil {
		return fmt.Errorf("receive %q: %w", msg, err)
	}
	if string(buf[:n]) != msg {
		return fmt.Errorf("received %q, sent %q", buf[:n], msg)
	}
	return nil
}

// SetPrimary makes peer:port the primary path of fd's association.
func SetPrimary(fd int, peer netip.Addr, port uint16) error {
	// struct sctp_prim is packed: a 4-byte association id (ignored on
	// one-to-one sockets), then a sockaddr_storage.
	b := make([]byte, 4+storageLen)
	copy(b[4:], sockaddr4(peer, port))
	if err := unix.SetsockoptString(fd, solSCTP, primaryAddr, string(b)); err != nil {
		return fmt.Errorf("SCTP_PRIMARY_ADDR %s: %w", peer, err)
	}
	return nil
}

// PathState is the state of the path to peer:port (StateActive once a
// heartbeat confirmed it).
func PathState(fd int, peer netip.Addr, port uint16) (int32, error) {
	// struct sctp_paddrinfo, packed: association id, sockaddr_storage, then
	// state, cwnd, srtt, rto, mtu.
	buf := make([]byte, 4+storageLen+5*4)
	copy(buf[4:], sockaddr4(peer, port))
	l := uint32(len(buf))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), solSCTP, peerAddrInfo,
		uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&l)), 0)
	if errno != 0 {
		return 0, fmt.Errorf("SCTP_GET_PEER_ADDR_INFO %s: %w", peer, errno)
	}
	return int32(binary.NativeEndian.Uint32(buf[4+storageLen:])), nil
}

// WaitPathActive waits up to timeout for the path to peer:port to be
// confirmed.
func WaitPathActive(fd int, peer netip.Addr, port uint16, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		st, err := PathState(fd, peer, port)
		if err != nil {
			return err
		}
		if st == StateActive {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("path to %s is in state %d, not active, after %s", peer, st, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FastFailover sets the netns's SCTP timers so that a dead path is
// noticed in well under a second (defaults take tens of seconds).
func FastFailover(netns string) error {
	// In this order: the kernel keeps rto_min <= rto_initial <= rto_max at
	// every step and refuses a write that would break it.
	settings := [][2]string{
		{"rto_min", "100"}, {"rto_initial", "200"}, {"rto_max", "400"},
		{"hb_interval", "200"}, {"path_max_retrans", "1"}, {"pf_retrans", "0"},
	}
	return netnstest.Do(netns, func() error {
		for _, kv := range settings {
			if err := writeSysctl("/proc/sys/net/sctp/"+kv[0], kv[1]); err != nil {
				return err
			}
		}
		return nil
	})
}

// retry repeats a raw system call interrupted by a signal: the Go runtime
// signals its threads (preemption), and raw calls, unlike the net package,
// do not restart themselves.
func retry(call func() (int, error)) (int, error) {
	for {
		n, err := call()
		if err != unix.EINTR {
			return n, err
		}
	}
}
