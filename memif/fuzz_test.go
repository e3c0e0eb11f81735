package memif

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FuzzDecodeMsg: any 128 bytes decode without panicking, and what decodes
// re-encodes to a message that decodes to the same thing.
func FuzzDecodeMsg(f *testing.F) {
	var b [msgSize]byte
	for _, m := range []msg{
		{typ: msgHello, name: "vpp", minVer: protoVer, maxVer: protoVer, maxRegion: 3, maxM2S: 1, maxS2M: 1, maxLog2Ring: 14},
		{typ: msgInit, version: protoVer, id: 7, mode: IP, secret: "abc", name: "x"},
		{typ: msgAddRegion, regionIndex: 1, regionSize: 1 << 20},
		{typ: msgAddRing, ringFlags: addRingS2M, ringIndex: 2, ringRegion: 0, ringOffset: 4096, log2Ring: 10},
		{typ: msgConnect, name: "memif0"},
		{typ: msgDisconnect, code: 3, reason: "bye"},
		{typ: msgAck},
	} {
		m.encode(&b)
		f.Add(b[:])
	}
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeMsg(data)
		if err != nil {
			return
		}
		var b [msgSize]byte
		m.encode(&b)
		m2, err := decodeMsg(b[:])
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if m2 != m {
			t.Fatalf("round trip: %+v != %+v", m2, m)
		}
	})
}

// FuzzRing: a peer controls every byte of a ring (head, tail, flags and
// descriptors) and the regions' sizes. Whatever it writes, the receive and
// transmit paths of both roles must neither panic nor touch memory outside
// the regions, and must only return frames that fit the caller's buffers.
func FuzzRing(f *testing.F) {
	f.Add(uint8(3), uint16(5), uint16(0), []byte{0, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0}, uint16(4096))
	f.Add(uint8(2), uint16(0xffff), uint16(3), []byte{1, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0}, uint16(100))
	f.Add(uint8(4), uint16(16), uint16(0), []byte{1, 0, 1, 0, 255, 255, 255, 255}, uint16(65535))
	f.Fuzz(func(t *testing.T, log2 uint8, head, tail uint16, descs []byte, regSize uint16) {
		log2 = log2%6 + 1
		size := 1 << log2
		rb := int(ringBytes(log2))
		bufSize := uint32(256)
		mem := make([]byte, rb+size*int(bufSize)+int(regSize))
		// Peer-written ring header and descriptors.
		binary.LittleEndian.PutUint16(mem[6:], head)
		binary.LittleEndian.PutUint16(mem[64:], tail)
		copy(mem[ringHdrSize:rb], descs)
		other := make([]byte, int(regSize))
		regions := []*region{{fd: -1, mem: mem}, {fd: -1, mem: other}}

		bufs := make([][]byte, 8)
		for i := range bufs {
			bufs[i] = make([]byte, 300)
		}
		pkts := [][]byte{make([]byte, 60), make([]byte, 700), make([]byte, 1)}
		for _, client := range []bool{false, true} {
			q := &queue{r: newRing(mem, 0, log2), regions: regions, mtu: 9000, evfd: -1,
				client: client, mem: mem, bufBase: uint32(rb), bufSize: bufSize, chunks: make([]chunk, 0, size)}
			q.r.setFlags(ringFlagMask)
			if client {
				q.head = head
				q.last = tail - uint16(len(descs)%size)
			} else {
				q.last = tail
				q.tail = tail
			}
			for round := 0; round < 2; round++ {
				n, _ := q.rx(bufs)
				if n > len(bufs) {
					t.Fatalf("rx returned %d frames for %d buffers", n, len(bufs))
				}
				for i := 0; i < n; i++ {
					if cap(bufs[i]) != 300 || unsafe.SliceData(bufs[i]) == nil {
						t.Fatalf("rx replaced buffer %d", i)
					}
					bufs[i] = bufs[i][:cap(bufs[i])]
				}
				var sent int
				if client {
					sent, _ = q.txClient(pkts)
				} else {
					sent, _ = q.txServer(pkts)
				}
				if sent > len(pkts) {
					t.Fatalf("tx sent %d of %d", sent, len(pkts))
				}
				// The peer moves the indexes arbitrarily between rounds.
				q.r.setHead(q.r.head() + uint16(len(descs)))
				q.r.setTail(q.r.tail() + uint16(regSize))
			}
		}
	})
}

// rawClient is a hand-driven memif client for hostile-peer tests.
type rawClient struct {
	t *testing.T
	c *net.UnixConn
}

func dialRaw(t *testing.T, sock string) *rawClient {
	t.Helper()
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: sock, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	r := &rawClient{t: t, c: c}
	if m := r.recv(); m.typ != msgHello {
		t.Fatalf("got %v, want HELLO", m.typ)
	}
	return r
}

func (r *rawClient) send(b []byte, fds ...int) {
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	_, _, _ = r.c.WriteMsgUnix(b, oob, nil)
	// The message holds its own references: close ours so that only the
	// server's handling decides whether anything stays open.
	for _, fd := range fds {
		unix.Close(fd)
	}
}

func (r *rawClient) sendMsg(m msg, fds ...int) {
	var b [msgSize]byte
	m.encode(&b)
	r.send(b[:], fds...)
}

// recv returns the next message, or a NONE message once the server hangs up.
func (r *rawClient) recv() msg {
	var b [msgSize]byte
	n, _, _, _, err := r.c.ReadMsgUnix(b[:], make([]byte, 64))
	if err != nil || n == 0 {
		return msg{typ: msgNone}
	}
	m, err := decodeMsg(b[:n])
	if err != nil {
		r.t.Fatalf("server sent a bad message: %v", err)
	}
	return m
}

func openFDs(t testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

func memfd(t testing.TB, size int64, seal bool) int {
	fd, err := unix.MemfdCreate("hostile", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Ftruncate(fd, size); err != nil {
		t.Fatal(err)
	}
	if seal {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK); err != nil {
			t.Fatal(err)
		}
	}
	return fd
}

// TestHostileClient walks a server through handshakes that each break one
// rule; every one must end with a DISCONNECT naming the problem, and the
// server must not leak a file descriptor.
func TestHostileClient(t *testing.T) {
	needMemfd(t)
	sock := filepath.Join(t.TempDir(), "s")
	l, err := Listen(Config{Socket: sock, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	init := msg{typ: msgInit, version: protoVer}
	ring := func(off uint32, log2 uint8) msg {
		return msg{typ: msgAddRing, ringFlags: addRingS2M, ringOffset: off, log2Ring: log2}
	}
	// Steps of a well-behaved handshake that the cases below break after.
	hello := func(r *rawClient) { r.sendMsg(init); r.recv() }
	region := func(r *rawClient) {
		hello(r)
		r.sendMsg(msg{typ: msgAddRegion, regionSize: 4096}, memfd(t, 4096, true))
		r.recv()
	}
	addRing := func(r *rawClient, m msg) {
		ev, _ := unix.Eventfd(0, unix.EFD_CLOEXEC)
		r.sendMsg(m, ev)
	}
	cases := []struct {
		name string
		run  func(r *rawClient)
	}{
		{"bad version", func(r *rawClient) { m := init; m.version = 0x0100; r.sendMsg(m) }},
		{"short message", func(r *rawClient) { r.send([]byte{3, 0, 0}) }},
		{"unknown type", func(r *rawClient) { b := make([]byte, msgSize); b[0] = 99; r.send(b) }},
		{"region before init", func(r *rawClient) { r.sendMsg(msg{typ: msgAddRegion, regionSize: 4096}, memfd(t, 4096, true)) }},
		{"region without fd", func(r *rawClient) {
			hello(r)
			r.sendMsg(msg{typ: msgAddRegion, regionSize: 4096})
		}},
		{"region larger than file", func(r *rawClient) {
			hello(r)
			r.sendMsg(msg{typ: msgAddRegion, regionSize: 1 << 20}, memfd(t, 4096, true))
		}},
		{"unsealed region", func(r *rawClient) {
			hello(r)
			r.sendMsg(msg{typ: msgAddRegion, regionSize: 4096}, memfd(t, 4096, false))
		}},
		{"two fds", func(r *rawClient) {
			hello(r)
			r.sendMsg(msg{typ: msgAddRegion, regionSize: 4096}, memfd(t, 4096, true), memfd(t, 4096, true))
		}},
		{"region index gap", func(r *rawClient) {
			hello(r)
			r.sendMsg(msg{typ: msgAddRegion, regionIndex: 5, regionSize: 4096}, memfd(t, 4096, true))
		}},
		{"ring outside region", func(r *rawClient) { region(r); addRing(r, ring(4000, 4)) }},
		{"ring too big", func(r *rawClient) { region(r); addRing(r, ring(0, 15)) }},
		{"ring twice and no cookie", func(r *rawClient) {
			region(r)
			addRing(r, ring(0, 2))
			r.recv()
			addRing(r, ring(0, 2))
		}},
		{"connect without cookie", func(r *rawClient) {
			region(r)
			addRing(r, ring(0, 2))
			r.recv()
			m := ring(1024, 2)
			m.ringFlags = 0
			addRing(r, m)
			r.recv()
			r.sendMsg(msg{typ: msgConnect})
		}},
		{"hang up mid-handshake", region},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := openFDs(t)
			r := dialRaw(t, sock)
			tc.run(r)
			if tc.name != "hang up mid-handshake" {
				last := r.recv()
				if last.typ != msgDisconnect {
					t.Fatalf("server answered %v, want DISCONNECT", last.typ)
				}
				t.Logf("server said: %q", last.reason)
			}
			r.c.Close()
			deadline := time.Now().Add(3 * time.Second)
			for openFDs(t) > before && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := openFDs(t); n > before {
				t.Fatalf("fds: %d before, %d after", before, n)
			}
		})
	}
	// The listener still serves well-behaved clients afterwards.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, Config{Socket: sock})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// FuzzHandshake drives a real server through arbitrary message sequences
// (each 128-byte chunk of the input is one message; a chunk whose last byte
// is odd carries a sealed memfd or an eventfd). The server must answer or
// hang up, never panic, and keep serving.
func FuzzHandshake(f *testing.F) {
	needMemfd(f)
	sock := filepath.Join(f.TempDir(), "s")
	l, err := Listen(Config{Socket: sock, Queues: 2, HandshakeTimeout: time.Second, Logger: quietLog})
	if err != nil {
		f.Fatal(err)
	}
	// Inputs that complete a handshake produce connections: close them.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept(ctx)
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	f.Cleanup(func() { cancel(); <-done; l.Close() })
	seq := func(ms ...msg) []byte {
		var out []byte
		for _, m := range ms {
			var b [msgSize]byte
			m.encode(&b)
			b[msgSize-1] = 1 // attach an fd
			out = append(out, b[:]...)
		}
		return out
	}
	f.Add(seq(msg{typ: msgInit, version: protoVer}, msg{typ: msgAddRegion, regionSize: 8192},
		msg{typ: msgAddRing, ringFlags: addRingS2M, log2Ring: 2}, msg{typ: msgAddRing, ringOffset: 1024, log2Ring: 2},
		msg{typ: msgConnect}))
	f.Add(seq(msg{typ: msgInit, version: protoVer}, msg{typ: msgAddRegion, regionSize: 1 << 40}))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: sock, Net: "unixpacket"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		var b [msgSize]byte
		if _, _, _, _, err := c.ReadMsgUnix(b[:], nil); err != nil {
			t.Fatalf("no HELLO: %v", err)
		}
		for len(data) > 0 && len(data) <= 16*msgSize {
			n := min(len(data), msgSize)
			chunk := data[:n]
			data = data[n:]
			var oob []byte
			var fd int = -1
			if chunk[n-1]&1 == 1 {
				if chunk[0] == byte(msgAddRegion) {
					fd, _ = unix.MemfdCreate("fz", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
					_ = unix.Ftruncate(fd, 8192)
					_, _ = unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK)
				} else {
					fd, _ = unix.Eventfd(0, unix.EFD_CLOEXEC)
				}
				oob = unix.UnixRights(fd)
			}
			_, _, err := c.WriteMsgUnix(chunk, oob, nil)
			if fd >= 0 {
				unix.Close(fd)
			}
			if err != nil {
				return
			}
			if _, _, _, _, err := c.ReadMsgUnix(b[:], nil); err != nil {
				return
			}
			if m, err := decodeMsg(b[:]); err != nil || m.typ == msgDisconnect {
				return
			}
		}
	})
}

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))
