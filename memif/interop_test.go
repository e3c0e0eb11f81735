package memif

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/telcni/telcni/internal/testpmd"
)

func findTestpmd(t *testing.T) *testpmd.Env {
	t.Helper()
	needMemfd(t)
	env, err := testpmd.Find()
	if err != nil && os.Getenv("MEMIF_REQUIRE_TESTPMD") != "" {
		t.Fatalf("MEMIF_REQUIRE_TESTPMD set but: %v", err)
	}
	if err != nil {
		t.Skipf("DPDK testpmd missing, interop test skipped: %v", err)
	}
	return env
}

// interopFrames is a bounded burst mixing minimum-size, typical and
// multi-buffer frames (2048-byte buffers: 5000 and 9000 bytes are chained).
func interopFrames(n int) [][]byte {
	sizes := []int{64, 1500, 60, 5000, 128, 9000, 1514}
	frames := make([][]byte, n)
	for i := range frames {
		f := frame(i, sizes[i%len(sizes)])
		// Unicast MACs so that no stack on the way treats them specially.
		copy(f[0:12], []byte{0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1})
		f[12], f[13] = 0x88, 0xb5 // local experimental ethertype
		f[14], f[15] = byte(i), byte(i>>8)
		frames[i] = f
	}
	return frames
}

// echo sends frames on c and expects testpmd (forward-mode io) to send each
// back unchanged, in order.
func echo(t *testing.T, c *Conn, frames [][]byte) { echoQ(t, c, 0, frames) }

func echoQ(t *testing.T, c *Conn, q int, frames [][]byte) {
	t.Helper()
	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = make([]byte, 10000)
	}
	sent, recv := 0, 0
	deadline := time.Now().Add(20 * time.Second)
	for recv < len(frames) {
		if time.Now().After(deadline) {
			t.Fatalf("timeout: sent %d, got back %d of %d", sent, recv, len(frames))
		}
		if sent < len(frames) && sent-recv < 256 {
			n, err := c.TxBurst(q, frames[sent:min(sent+32, len(frames))])
			if err != nil {
				t.Fatalf("TxBurst: %v", err)
			}
			sent += n
		}
		n, err := c.RxBurst(q, bufs)
		if err != nil {
			t.Fatalf("RxBurst: %v", err)
		}
		for i := 0; i < n; i++ {
			want := frames[recv]
			if string(bufs[i]) != string(want) {
				t.Fatalf("frame %d: got %d bytes (%x...), want %d bytes (%x...)", recv, len(bufs[i]), bufs[i][:min(16, len(bufs[i]))], len(want), want[:16])
			}
			bufs[i] = bufs[i][:cap(bufs[i])]
			recv++
		}
		if n == 0 {
			time.Sleep(10 * time.Microsecond)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if n, _ := c.RxBurst(q, bufs); n != 0 {
		t.Fatalf("%d frames more than sent came back", n)
	}
}

func checkCounts(t *testing.T, p *testpmd.Proc, n int) {
	t.Helper()
	testpmdCmd(t, p, "stop")
	st, err := p.PortStats()
	if err != nil {
		t.Fatal(err)
	}
	if st.RxPackets != uint64(n) || st.TxPackets != uint64(n) || st.RxErrors != 0 || st.TxErrors != 0 || st.RxMissed != 0 {
		t.Fatalf("testpmd counters %+v, want exactly %d each way and no errors", st, n)
	}
}

const interopN = 20000

func TestInteropGoServerTestpmdClient(t *testing.T) {
	env := findTestpmd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sock := filepath.Join(t.TempDir(), "memif.sock")
	l, err := Listen(Config{Socket: sock, ID: 3, Secret: "telcni"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p := startTestpmd(t, ctx, env, testpmd.Options{
		Name: fmt.Sprintf("telcni-it-c%d", os.Getpid()), MainCore: 0,
		Vdev: "net_memif0,role=client,id=3,secret=telcni,socket-abstract=no,bsize=2048,rsize=10,socket=" + sock,
		Args: []string{"--forward-mode=io", "--total-num-mbufs=32768"},
	})
	c, err := l.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testpmdCmd(t, p, "start")
	echo(t, c, interopFrames(interopN))
	checkCounts(t, p, interopN)

	// testpmd stops its port: we see the disconnect. It starts it again:
	// the same interface reconnects and carries traffic.
	testpmdCmd(t, p, "port stop 0")
	select {
	case <-c.Done():
		t.Logf("after port stop: %v", c.Err())
	case <-time.After(5 * time.Second):
		t.Fatal("no disconnect after testpmd stopped its port")
	}
	testpmdCmd(t, p, "port start 0")
	c2, err := l.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	testpmdCmd(t, p, "clear port stats 0", "start")
	echo(t, c2, interopFrames(1000))
	checkCounts(t, p, 1000)
}

// TestInteropQueuesAndInterrupts: two queue pairs, and our receive rings in
// interrupt mode, so that testpmd (server) must signal our eventfds.
func TestInteropQueuesAndInterrupts(t *testing.T) {
	env := findTestpmd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sock := filepath.Join(t.TempDir(), "memif.sock")
	p := startTestpmd(t, ctx, env, testpmd.Options{
		Name: fmt.Sprintf("telcni-it-q%d", os.Getpid()), MainCore: 0,
		Vdev: "net_memif0,role=server,id=1,socket-abstract=no,socket=" + sock,
		Args: []string{"--forward-mode=io", "--rxq=2", "--txq=2"},
	})
	c, err := Dial(ctx, Config{Socket: sock, ID: 1, Queues: 2, Interrupt: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.NumRxQueues() != 2 || c.NumTxQueues() != 2 {
		t.Fatalf("queues rx %d tx %d, want 2 each", c.NumRxQueues(), c.NumTxQueues())
	}
	if err := p.WaitLinkUp(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	testpmdCmd(t, p, "start")
	for q := 0; q < 2; q++ {
		// testpmd must kick our eventfd after it fills our receive ring:
		// send one frame, take it, and find the eventfd counter raised.
		f := interopFrames(1)
		if n, err := c.TxBurst(q, f); n != 1 || err != nil {
			t.Fatal(n, err)
		}
		bufs := [][]byte{make([]byte, 10000)}
		deadline := time.Now().Add(5 * time.Second)
		n := 0
		for n == 0 && time.Now().Before(deadline) {
			n, _ = c.RxBurst(q, bufs)
		}
		if n != 1 || string(bufs[0]) != string(f[0]) {
			t.Fatalf("queue %d: got %d frames", q, n)
		}
		ev := c.evfiles[q]
		_ = ev.SetReadDeadline(time.Now().Add(time.Second))
		var kick [8]byte
		if _, err := ev.Read(kick[:]); err != nil {
			t.Fatalf("queue %d: testpmd did not signal our eventfd: %v", q, err)
		}
		_ = ev.SetReadDeadline(time.Time{})
		// WaitRx blocks while the ring is empty and wakes on the kick.
		woke := make(chan error, 1)
		go func() {
			wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
			defer wcancel()
			woke <- c.WaitRx(wctx, q)
		}()
		time.Sleep(50 * time.Millisecond)
		if n, err := c.TxBurst(q, f); n != 1 || err != nil {
			t.Fatal(n, err)
		}
		if err := <-woke; err != nil {
			t.Fatalf("queue %d: WaitRx: %v", q, err)
		}
		if n, _ := c.RxBurst(q, bufs); n != 1 {
			t.Fatalf("queue %d: WaitRx woke with %d frames waiting", q, n)
		}
		echoQ(t, c, q, interopFrames(5000))
	}
	checkCounts(t, p, 2*5002)
}

func TestInteropGoClientTestpmdServer(t *testing.T) {
	env := findTestpmd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, abstract := range []bool{false, true} {
		t.Run(map[bool]string{false: "path", true: "abstract"}[abstract], func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "memif.sock")
			goSock := sock
			vdev := "net_memif0,role=server,id=5,socket-abstract=no,socket=" + sock
			if abstract {
				// DPDK's abstract socket name is the path, without a file.
				sock = fmt.Sprintf("/telcni-it-%d", os.Getpid())
				goSock = "abstract:" + sock
				vdev = "net_memif0,role=server,id=5,socket-abstract=yes,socket=" + sock
			}
			p := startTestpmd(t, ctx, env, testpmd.Options{
				Name: fmt.Sprintf("telcni-it-s%d", os.Getpid()), MainCore: 0, Vdev: vdev,
				Args: []string{"--forward-mode=io", "--total-num-mbufs=32768"},
			})
			c, err := Dial(ctx, Config{Socket: goSock, ID: 5, BufferSize: 2048, Log2RingSize: 10})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := p.WaitLinkUp(5 * time.Second); err != nil {
				t.Fatal(err)
			}
			testpmdCmd(t, p, "start")
			echo(t, c, interopFrames(interopN))
			checkCounts(t, p, interopN)
		})
	}
}

// startTestpmd starts testpmd for t; it quits at t's cleanup (after the
// test's deferred closes and ctx's cancel: it outlives ctx, bounded by its
// own timeout), printing its output when t failed.
func startTestpmd(t *testing.T, ctx context.Context, env *testpmd.Env, o testpmd.Options) *testpmd.Proc {
	t.Helper()
	p, err := env.Start(context.WithoutCancel(ctx), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Quit()
		if t.Failed() {
			t.Logf("testpmd output:\n%s", p.Output())
		}
	})
	return p
}

// testpmdCmd runs testpmd commands in order, failing t at the first error.
func testpmdCmd(t *testing.T, p *testpmd.Proc, cmds ...string) {
	t.Helper()
	for _, c := range cmds {
		if _, err := p.Cmd(c); err != nil {
			t.Fatalf("testpmd %q: %v", c, err)
		}
	}
}
