package kernelguest_test

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"
	"testing"
	"time"
	"unsafe"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/telcni/telcni/kernelguest"
)

// Linux SCTP socket options (include/uapi/linux/sctp.h); Go's stdlib has no SCTP.
const (
	solSCTP             = 132
	sctpPrimaryAddr     = 6
	sctpBindxAdd        = 100
	sctpGetPeerAddrs    = 108
	sctpGetPeerAddrInfo = 15
	sctpStateActive     = 2 // enum sctp_spinfo_state
	sizeofSockaddrIn    = 16
	sizeofSockaddrSto   = 128
)

// sockaddrIn4 encodes a struct sockaddr_in as the kernel reads it.
func sockaddrIn4(a netip.AddrPort) []byte {
	b := make([]byte, sizeofSockaddrIn)
	binary.NativeEndian.PutUint16(b[0:], unix.AF_INET)
	binary.BigEndian.PutUint16(b[2:], a.Port())
	ip := a.Addr().As4()
	copy(b[4:8], ip[:])
	return b
}

// sctpSocket opens a one-to-one (SOCK_STREAM) SCTP socket inside ns and binds
// it to every address of addrs with sctp_bindx (SCTP_SOCKOPT_BINDX_ADD).
func sctpSocket(t *testing.T, ns netns.NsHandle, addrs ...netip.AddrPort) int {
	t.Helper()
	fd := -1
	err := kernelguest.Do(ns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_SCTP)
		return err
	})
	if err != nil {
		t.Fatalf("SCTP socket: %v", err)
	}
	t.Cleanup(func() { _ = unix.Close(fd) })
	var packed []byte
	for _, a := range addrs {
		packed = append(packed, sockaddrIn4(a)...)
	}
	if err := unix.SetsockoptString(fd, solSCTP, sctpBindxAdd, string(packed)); err != nil {
		t.Fatalf("sctp_bindx %v: %v", addrs, err)
	}
	// No read may hang the test: the association is expected to answer at once.
	tv := unix.Timeval{Sec: 10}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatalf("SO_RCVTIMEO: %v", err)
	}
	return fd
}

// sctpPeerAddrs returns the peer addresses of fd's association, sorted.
func sctpPeerAddrs(fd int) ([]string, error) {
	buf := make([]byte, 8+8*sizeofSockaddrIn) // struct sctp_getaddrs + room for 8
	l := uint32(len(buf))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), solSCTP, sctpGetPeerAddrs,
		uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&l)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("SCTP_GET_PEER_ADDRS: %w", errno)
	}
	n := int(binary.NativeEndian.Uint32(buf[4:8]))
	var out []string
	for i := 0; i < n && 8+(i+1)*sizeofSockaddrIn <= int(l); i++ {
		sa := buf[8+i*sizeofSockaddrIn:]
		if binary.NativeEndian.Uint16(sa[0:]) != unix.AF_INET {
			return nil, fmt.Errorf("peer address %d has family %d", i, binary.NativeEndian.Uint16(sa[0:]))
		}
		out = append(out, netip.AddrFrom4([4]byte(sa[4:8])).String())
	}
	sort.Strings(out)
	return out, nil
}

// sctpSetPrimary makes addr the primary path of fd's association (SCTP_PRIMARY_ADDR).
func sctpSetPrimary(fd int, addr netip.AddrPort) error {
	// struct sctp_prim is packed: a 4-byte assoc id, then a sockaddr_storage. The
	// id is ignored on one-to-one sockets.
	b := make([]byte, 4+sizeofSockaddrSto)
	copy(b[4:], sockaddrIn4(addr))
	if err := unix.SetsockoptString(fd, solSCTP, sctpPrimaryAddr, string(b)); err != nil {
		return fmt.Errorf("SCTP_PRIMARY_ADDR %s: %w", addr, err)
	}
	return nil
}

// sctpPathState returns the state of the path to peer (SCTP_GET_PEER_ADDR_INFO).
func sctpPathState(fd int, peer netip.AddrPort) (int32, error) {
	// struct sctp_paddrinfo, packed: assoc id, sockaddr_storage, then state,
	// cwnd, srtt, rto, mtu.
	buf := make([]byte, 4+sizeofSockaddrSto+5*4)
	copy(buf[4:], sockaddrIn4(peer))
	l := uint32(len(buf))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), solSCTP, sctpGetPeerAddrInfo,
		uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&l)), 0)
	if errno != 0 {
		return 0, fmt.Errorf("SCTP_GET_PEER_ADDR_INFO %s: %w", peer, errno)
	}
	return int32(binary.NativeEndian.Uint32(buf[4+sizeofSockaddrSto:])), nil
}

// waitPathActive waits until the path to peer is confirmed (heartbeat answered).
func waitPathActive(t *testing.T, side string, fd int, peer netip.AddrPort) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := sctpPathState(fd, peer)
		if err != nil {
			t.Fatalf("%s: %v", side, err)
		}
		if st == sctpStateActive {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: path to %s is in state %d, not active, after 10s", side, peer, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sctpSendRecv(t *testing.T, from, to int, msg string) {
	t.Helper()
	start := time.Now()
	defer func() { t.Logf("%q delivered in %s", msg, time.Since(start).Round(time.Millisecond)) }()
	if _, err := eintr(func() (int, error) { return unix.Write(from, []byte(msg)) }); err != nil {
		t.Fatalf("send %q: %v", msg, err)
	}
	buf := make([]byte, 256)
	n, err := eintr(func() (int, error) { return unix.Read(to, buf) })
	if err != nil {
		t.Fatalf("receive %q: %v", msg, err)
	}
	if got := string(buf[:n]); got != msg {
		t.Fatalf("received %q, want %q", got, msg)
	}
}

// An SCTP association between two netns over two paths: both ends see both of
// the other's addresses, and with the first path's link down, data still flows
// over the second.
func TestProbeSCTPMultihoming(t *testing.T) {
	kernelguest.Require(t)
	nsA, nsB := kernelguest.NewNetNS(t), kernelguest.NewNetNS(t)
	vethPair(t, nsA, "p1a", nsB, "p1b")
	vethPair(t, nsA, "p2a", nsB, "p2b")
	addrUp(t, nsA, "p1a", "192.0.2.1/24")
	addrUp(t, nsB, "p1b", "192.0.2.2/24")
	addrUp(t, nsA, "p2a", "198.51.100.1/24")
	addrUp(t, nsB, "p2b", "198.51.100.2/24")

	// Fast heartbeats and retransmissions, so that the second path is confirmed
	// (RFC 4960 path verification) within a moment instead of 30s.
	for _, ns := range []netns.NsHandle{nsA, nsB} {
		for _, kv := range [][2]string{{"net.sctp.hb_interval", "100"}, {"net.sctp.rto_initial", "200"}, {"net.sctp.rto_min", "100"}, {"net.sctp.rto_max", "500"}} {
			if err := kernelguest.Sysctl(ns, kv[0], kv[1]); err != nil {
				t.Fatal(err)
			}
		}
	}
	srv := sctpSocket(t, nsB, ap("192.0.2.2:9899"), ap("198.51.100.2:9899"))
	if err := unix.Listen(srv, 1); err != nil {
		t.Fatalf("listen: %v", err)
	}
	cli := sctpSocket(t, nsA, ap("192.0.2.1:9898"), ap("198.51.100.1:9898"))

	type accepted struct {
		fd  int
		err error
	}
	acc := make(chan accepted, 1)
	go func() { // owned by the test: ends when accept returns, or fails once srv is closed
		fd, err := eintr(func() (int, error) { fd, _, err := unix.Accept(srv); return fd, err })
		acc <- accepted{fd, err}
	}()
	start := time.Now()
	if _, err := eintr(func() (int, error) {
		return 0, unix.Connect(cli, &unix.SockaddrInet4{Port: 9899, Addr: [4]byte{192, 0, 2, 2}})
	}); err != nil {
		t.Fatalf("connect: %v", err)
	}
	var conn int
	select {
	case a := <-acc:
		if a.err != nil {
			t.Fatalf("accept: %v", a.err)
		}
		conn = a.fd
		t.Cleanup(func() { _ = unix.Close(conn) })
	case <-time.After(10 * time.Second):
		_ = unix.Shutdown(srv, unix.SHUT_RDWR)
		t.Fatal("no association accepted within 10s")
	}

	t.Logf("association up in %s", time.Since(start).Round(time.Millisecond))
	for _, c := range []struct {
		side string
		fd   int
		want []string
	}{{"client", cli, []string{"192.0.2.2", "198.51.100.2"}}, {"server", conn, []string{"192.0.2.1", "198.51.100.1"}}} {
		got, err := sctpPeerAddrs(c.fd)
		if err != nil {
			t.Fatalf("%s: %v", c.side, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Fatalf("%s sees peer addresses %v, want %v (multi-homed)", c.side, got, c.want)
		}
	}
	sctpSendRecv(t, cli, conn, "over path 1")
	waitPathActive(t, "client", cli, ap("198.51.100.2:9899"))
	waitPathActive(t, "server", conn, ap("198.51.100.1:9898"))
	t.Logf("second path confirmed on both ends %s after association", time.Since(start).Round(time.Millisecond))

	// Cut path 1 and move both ends' primary to path 2.
	h := kernelguest.Handle(t, nsA)
	p1a, err := h.LinkByName("p1a")
	if err != nil {
		t.Fatalf("find p1a: %v", err)
	}
	if err := h.LinkSetDown(p1a); err != nil {
		t.Fatalf("set p1a down: %v", err)
	}
	if err := sctpSetPrimary(cli, ap("198.51.100.2:9899")); err != nil {
		t.Fatalf("client: %v", err)
	}
	if err := sctpSetPrimary(conn, ap("198.51.100.1:9898")); err != nil {
		t.Fatalf("server: %v", err)
	}
	// Path 1 is gone, so these can only go over path 2; each end's primary points
	// there, so no retransmission timeout is needed (sctpSendRecv logs the time).
	sctpSendRecv(t, cli, conn, "over path 2, client to server")
	sctpSendRecv(t, conn, cli, "over path 2, server to client")
}

// eintr restarts a raw system call interrupted by a signal (the Go runtime
// signals its threads for preemption; raw calls do not restart themselves).
func eintr(call func() (int, error)) (int, error) {
	for {
		n, err := call()
		if err != unix.EINTR {
			return n, err
		}
	}
}
