package trex

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/telcni/telcni/memif"
)

// Dir returns the unpacked TRex (TREX_DIR, or .cache/trex at the root of
// this module), or "" when it holds no _t-rex-64 (`make deps-trex` unpacks
// it).
func Dir() string {
	if d := os.Getenv("TREX_DIR"); d != "" {
		if _, err := os.Stat(filepath.Join(d, "_t-rex-64")); err != nil {
			return ""
		}
		return d
	}
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			p := filepath.Join(d, ".cache", "trex")
			if _, err := os.Stat(filepath.Join(p, "_t-rex-64")); err == nil {
				return p
			}
			return ""
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}

// Server is a TRex stateless server started for a test, with its two
// memif ports connected to a Go forwarder (port 0 <-> port 1).
type Server struct {
	// Addr is the JSON-RPC address (127.0.0.1:port).
	Addr string
	// Dir is the server's private directory (config, memif sockets, log).
	Dir string
	// Client is connected and API-synced.
	Client *Client
	// Forwarded counts frames the Go bridge moved from port 0 to port 1
	// and from port 1 to port 0.
	Forwarded [2]atomic.Uint64

	cmd *exec.Cmd
	log *bytes.Buffer
}

type lockedBuf struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// StartServer starts TRex from Dir() on free TCP ports with two memif
// server ports in a private directory, connects two Go memif clients as
// their peers and forwards frames between them, and connects a Client.
// Everything is stopped when the test ends. It skips the test when TRex is
// not unpacked (TELCNI_REQUIRE_TREX=1 makes that a failure) or when not
// root.
func StartServer(t testing.TB) *Server {
	t.Helper()
	return StartServerWith(t, ServerOptions{})
}

// ServerOptions shape a test TRex server.
type ServerOptions struct {
	// Peers, when set, makes TRex's two ports memif clients of these
	// memif servers (socket files, e.g. the sockets VPP serves for two
	// pods) instead of servers looped through a Go forwarder.
	Peers *[2]MemifPeer
}

// MemifPeer is a memif server TRex connects to as a client.
type MemifPeer struct {
	Socket string // a socket file
	ID     uint32
}

// StartServerWith is StartServer with options.
func StartServerWith(t testing.TB, o ServerOptions) *Server {
	t.Helper()
	dir := Dir()
	if dir == "" {
		msg := "TRex not unpacked into .cache/trex (run `make deps-trex`, or set TREX_DIR to a directory with _t-rex-64)"
		if d := os.Getenv("TREX_DIR"); d != "" {
			msg = "no _t-rex-64 in TREX_DIR=" + d
		}
		if os.Getenv("TELCNI_REQUIRE_TREX") == "1" {
			t.Fatal(msg + "; TELCNI_REQUIRE_TREX=1")
		}
		t.Skip(msg)
	}
	if os.Geteuid() != 0 {
		if os.Getenv("TELCNI_REQUIRE_TREX") == "1" {
			t.Fatal("TRex needs root; TELCNI_REQUIRE_TREX=1")
		}
		t.Skip("TRex needs root")
	}
	priv, err := os.MkdirTemp("", "trex")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(priv) })
	rpcPort, pubPort := freePort(t), freePort(t)
	sock := [2]string{filepath.Join(priv, "m0.sock"), filepath.Join(priv, "m1.sock")}
	role, ids, rings := "server", [2]uint32{}, ""
	if o.Peers != nil {
		// As a client TRex sizes the rings: 16384 slots (the most memif
		// allows) absorb the moments its single core spends sending.
		role, rings = "client", ",rsize=14"
		for i, p := range o.Peers {
			sock[i], ids[i] = p.Socket, p.ID
		}
	}
	cfg := fmt.Sprintf(`- version: 2
  interfaces: ['--vdev=net_memif0,role=%s,id=%d,socket=%s,socket-abstract=no%s',
               '--vdev=net_memif1,role=%s,id=%d,socket=%s,socket-abstract=no%s']
  prefix: %s
  zmq_rpc_port: %d
  zmq_pub_port: %d
  port_info:
    - dest_mac: 02:00:00:00:00:02
      src_mac:  02:00:00:00:00:01
    - dest_mac: 02:00:00:00:00:01
      src_mac:  02:00:00:00:00:02
  low_end: true
  low_end_core: 0
`, role, ids[0], sock[0], rings, role, ids[1], sock[1], rings, filepath.Base(priv), rpcPort, pubPort)
	cfgPath := filepath.Join(priv, "trex_cfg.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	s := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", rpcPort), Dir: priv, log: &bytes.Buffer{}}
	lb := &lockedBuf{b: s.log}
	s.cmd = exec.Command(filepath.Join(dir, "run-stl-server.sh"), cfgPath)
	s.cmd.Stdout, s.cmd.Stderr = lb, lb
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting TRex: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- s.cmd.Wait() }()
	t.Cleanup(func() {
		pid := s.cmd.Process.Pid
		syscall.Kill(-pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-pid, syscall.SIGKILL)
			<-exited
		}
		// DPDK leaves its runtime directory behind.
		os.RemoveAll(filepath.Join("/var/run/dpdk", filepath.Base(priv)))
		if t.Failed() || testing.Verbose() {
			lb.mu.Lock()
			t.Logf("TRex output:\n%s", tail(s.log.String(), 3000))
			lb.mu.Unlock()
		}
	})
	fail := func(format string, args ...any) {
		t.Helper()
		lb.mu.Lock()
		out := tail(s.log.String(), 3000)
		lb.mu.Unlock()
		t.Fatalf("%s\nTRex output:\n%s", fmt.Sprintf(format, args...), out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if o.Peers == nil {
		s.startForwarder(ctx, t, sock, exited, fail)
	}

	cctx, ccancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-exited:
			ccancel()
		case <-cctx.Done():
		}
	}()
	c, err := Connect(cctx, s.Addr)
	ccancel()
	if err != nil {
		fail("connecting to TRex at %s: %v", s.Addr, err)
	}
	t.Cleanup(func() { c.Close() })
	s.Client = c
	peers := "Go forwarder"
	if o.Peers != nil {
		peers = fmt.Sprintf("memif servers %s, %s", sock[0], sock[1])
	}
	t.Logf("TRex %s up at %s in %v (memif peers: %s)", c.Version.Version, s.Addr, time.Since(start).Round(time.Millisecond), peers)
	return s
}

// startForwarder connects two Go memif clients to TRex's server ports as
// soon as the sockets exist and forwards between them until the test ends.
func (s *Server) startForwarder(ctx context.Context, t testing.TB, sock [2]string, exited <-chan error, fail func(string, ...any)) {
	t.Helper()
	var conns [2]*memif.Conn
	for i := range conns {
		for {
			c, err := memif.Dial(ctx, memif.Config{Socket: sock[i], ID: 0, Mode: memif.Ethernet, Name: fmt.Sprintf("gofwd%d", i),
				// 4096 slots: 400 ms of the loop test's 10 kpps, so that a
				// forwarder descheduled on a busy machine loses nothing.
				Log2RingSize: 12})
			if err == nil {
				conns[i] = c
				break
			}
			select {
			case err := <-exited:
				fail("TRex exited before its memif port %d came up: %v", i, err)
			case <-ctx.Done():
				fail("memif port %d of TRex: %v", i, err)
			case <-time.After(100 * time.Millisecond):
			}
		}
		t.Cleanup(func() { conns[i].Close() })
	}
	fctx, fcancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); forward(fctx, conns[0], conns[1], &s.Forwarded[0]) }()
	go func() { defer wg.Done(); forward(fctx, conns[1], conns[0], &s.Forwarded[1]) }()
	t.Cleanup(func() { fcancel(); wg.Wait() })
}

// Log returns TRex's output so far.
func (s *Server) Log() string { return s.log.String() }

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// forward moves every frame received on from (all queues) to to (queue 0),
// polling, sleeping briefly when idle. Frames that find to's ring full are
// dropped (counted by TRex as loss, as a real device would).
func forward(ctx context.Context, from, to *memif.Conn, n *atomic.Uint64) {
	const burst = 32
	bufs := make([][]byte, burst)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	idle := 0
	for ctx.Err() == nil {
		got := 0
		for q := 0; q < from.NumRxQueues(); q++ {
			k, err := from.RxBurst(q, bufs)
			if err != nil {
				if errors.Is(err, memif.ErrClosed) {
					return
				}
				continue
			}
			got += k
			sent := 0
			for tries := 0; sent < k && tries < 1000; tries++ {
				m, err := to.TxBurst(0, bufs[sent:k])
				if err != nil {
					break
				}
				sent += m
				if m == 0 {
					runtime.Gosched()
				}
			}
			n.Add(uint64(sent))
			for i := 0; i < k; i++ {
				bufs[i] = bufs[i][:cap(bufs[i])]
			}
		}
		if got > 0 {
			idle = 0
			continue
		}
		idle++
		if idle > 64 {
			time.Sleep(50 * time.Microsecond)
		} else {
			runtime.Gosched()
		}
	}
}
