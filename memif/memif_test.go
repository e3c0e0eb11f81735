package memif

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func needMemfd(t testing.TB) {
	t.Helper()
	// memfd, abstract sockets and SCM_RIGHTS need no privileges, but keep
	// the message clear if something in the sandbox forbids them.
	r, err := newRegion("probe", 4096)
	if err != nil {
		t.Skipf("memfd_create unavailable (%v): memif needs Linux memfd", err)
	}
	r.close()
}

// pair starts a server on sock and connects a client to it.
func pair(t testing.TB, srvCfg, cliCfg Config) (srv, cli *Conn) {
	t.Helper()
	needMemfd(t)
	l, err := Listen(srvCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cliCfg.Socket = srvCfg.Socket
	cli, err = Dial(ctx, cliCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	srv, err = l.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, cli
}

func sockPath(t testing.TB) string {
	return filepath.Join(t.TempDir(), "memif.sock")
}

func frame(seq, size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(seq*7 + i*13)
	}
	b[0], b[1] = byte(seq), byte(seq>>8)
	return b
}

// transfer sends frames from tx to rx on queue q and checks every one
// arrives intact and in order.
func transfer(t *testing.T, tx, rx *Conn, q int, frames [][]byte) {
	t.Helper()
	bufs := make([][]byte, 32)
	for i := range bufs {
		bufs[i] = make([]byte, 16384)
	}
	sent, recv := 0, 0
	deadline := time.Now().Add(10 * time.Second)
	for recv < len(frames) {
		if time.Now().After(deadline) {
			t.Fatalf("timeout: sent %d received %d of %d", sent, recv, len(frames))
		}
		if sent < len(frames) {
			n, err := tx.TxBurst(q, frames[sent:min(sent+32, len(frames))])
			if err != nil {
				t.Fatalf("TxBurst: %v", err)
			}
			sent += n
		}
		n, err := rx.RxBurst(q, bufs)
		if err != nil {
			t.Fatalf("RxBurst: %v", err)
		}
		for i := 0; i < n; i++ {
			if !bytes.Equal(bufs[i], frames[recv]) {
				t.Fatalf("frame %d: got %d bytes %x..., want %d bytes %x...", recv, len(bufs[i]), bufs[i][:min(8, len(bufs[i]))], len(frames[recv]), frames[recv][:8])
			}
			bufs[i] = bufs[i][:cap(bufs[i])]
			recv++
		}
	}
	if n, _ := rx.RxBurst(q, bufs); n != 0 {
		t.Fatalf("%d extra frames", n)
	}
}

func TestGoToGo(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sizes []int
		cfg   Config
	}{
		{"small", []int{64, 60, 1500}, Config{}},
		{"chained", []int{2048, 2049, 5000, 9000, 64}, Config{BufferSize: 2048}},
		{"tiny-ring", []int{100, 3000}, Config{Log2RingSize: 3, BufferSize: 512}},
		{"ip-mode", []int{20, 1400}, Config{Mode: IP}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := tc.cfg
			sc.Socket = sockPath(t)
			srv, cli := pair(t, sc, tc.cfg)
			var frames [][]byte
			for i := 0; i < 3000; i++ {
				frames = append(frames, frame(i, tc.sizes[i%len(tc.sizes)]))
			}
			transfer(t, cli, srv, 0, frames)
			transfer(t, srv, cli, 0, frames)
			rx, tx := cli.Stats()
			if rx[0].Packets != 3000 || tx[0].Packets != 3000 {
				t.Fatalf("client stats rx %+v tx %+v", rx, tx)
			}
		})
	}
}

func TestQueuesAndAbstract(t *testing.T) {
	sock := fmt.Sprintf("abstract:telcni-memif-test-%d", os.Getpid())
	srv, cli := pair(t, Config{Socket: sock, Queues: 4}, Config{Queues: 3})
	if srv.NumRxQueues() != 3 || cli.NumTxQueues() != 3 || srv.NumTxQueues() != 3 {
		t.Fatalf("queues: srv rx %d tx %d cli tx %d", srv.NumRxQueues(), srv.NumTxQueues(), cli.NumTxQueues())
	}
	for q := 0; q < 3; q++ {
		frames := [][]byte{frame(q, 100+q), frame(q+10, 3000)}
		transfer(t, cli, srv, q, frames)
		transfer(t, srv, cli, q, frames)
	}
	if _, err := cli.TxBurst(3, nil); !errors.Is(err, ErrBadQueue) {
		t.Fatalf("queue 3: %v", err)
	}
}

func TestRefusals(t *testing.T) {
	needMemfd(t)
	sock := sockPath(t)
	l, err := Listen(Config{Socket: sock, ID: 7, Secret: "s3cret", Mode: Ethernet})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{ID: 8, Secret: "s3cret"}, "unknown interface id"},
		{Config{ID: 7, Secret: "wrong"}, "incorrect secret"},
		{Config{ID: 7, Secret: "s3cret", Mode: IP}, "mode mismatch"},
	} {
		tc.cfg.Socket = sock
		c, err := Dial(ctx, tc.cfg)
		if err == nil {
			c.Close()
			t.Fatalf("%+v: connected", tc.cfg)
		}
		if !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
			t.Fatalf("%+v: error %q, want %q", tc.cfg, err, tc.want)
		}
	}
	// A second client for a busy ID is refused; after the first leaves,
	// the ID can be connected again.
	c1, err := Dial(ctx, Config{Socket: sock, ID: 7, Secret: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	s1, err := l.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Dial(ctx, Config{Socket: sock, ID: 7, Secret: "s3cret"}); err == nil || !bytes.Contains([]byte(err.Error()), []byte("already connected")) {
		t.Fatalf("second client: %v", err)
	}
	c1.Close()
	select {
	case <-s1.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("server side did not see the disconnect")
	}
	if s1.Err() == nil || !bytes.Contains([]byte(s1.Err().Error()), []byte("closed by local side")) {
		t.Fatalf("server reason: %v", s1.Err())
	}
	if _, err := s1.RxBurst(0, make([][]byte, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("rx after close: %v", err)
	}
	c2, err := Dial(ctx, Config{Socket: sock, ID: 7, Secret: "s3cret"})
	if err != nil {
		t.Fatalf("reconnect: %v", err)
	}
	s2, err := l.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	transfer(t, c2, s2, 0, [][]byte{frame(1, 64)})
	s2.Close() // server-side close: client must notice
	select {
	case <-c2.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("client did not see the disconnect")
	}
}

func TestInterrupt(t *testing.T) {
	srv, cli := pair(t, Config{Socket: sockPath(t), Interrupt: true}, Config{Interrupt: true})
	for _, dir := range []struct{ tx, rx *Conn }{{cli, srv}, {srv, cli}} {
		got := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			got <- dir.rx.WaitRx(ctx, 0)
		}()
		time.Sleep(50 * time.Millisecond)
		if _, err := dir.tx.TxBurst(0, [][]byte{frame(1, 64)}); err != nil {
			t.Fatal(err)
		}
		if err := <-got; err != nil {
			t.Fatalf("WaitRx: %v", err)
		}
		bufs := [][]byte{make([]byte, 100)}
		if n, _ := dir.rx.RxBurst(0, bufs); n != 1 {
			t.Fatalf("got %d frames after wake-up", n)
		}
	}
	// WaitRx honours its context when nothing arrives.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := cli.WaitRx(ctx, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("idle WaitRx: %v", err)
	}
}

func TestTooLargeAndDrops(t *testing.T) {
	srv, cli := pair(t, Config{Socket: sockPath(t)}, Config{MTU: 1500})
	n, err := cli.TxBurst(0, [][]byte{frame(1, 64), frame(2, 1501), frame(3, 64)})
	if n != 1 || !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("TxBurst: %d %v", n, err)
	}
	if n, err := cli.TxBurst(0, [][]byte{frame(4, 1000)}); n != 1 || err != nil {
		t.Fatal(n, err)
	}
	bufs := [][]byte{make([]byte, 500), make([]byte, 500)}
	n, err = srv.RxBurst(0, bufs)
	if n != 1 || err != nil || len(bufs[0]) != 64 {
		t.Fatalf("RxBurst: %d %v", n, err)
	}
	rx, _ := srv.Stats()
	if rx[0].Drops != 1 {
		t.Fatalf("drops %d, want 1 (1000-byte frame into a 500-byte buffer)", rx[0].Drops)
	}
}

func TestNoAllocs(t *testing.T) {
	srv, cli := pair(t, Config{Socket: sockPath(t)}, Config{})
	pkts := make([][]byte, 32)
	for i := range pkts {
		pkts[i] = frame(i, 64)
	}
	bufs := make([][]byte, 32)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	for _, d := range []struct{ tx, rx *Conn }{{cli, srv}, {srv, cli}} {
		allocs := testing.AllocsPerRun(200, func() {
			n, _ := d.tx.TxBurst(0, pkts)
			m, _ := d.rx.RxBurst(0, bufs)
			if n != 32 || m != 32 {
				panic(fmt.Sprintf("sent %d received %d", n, m))
			}
			for i := range bufs {
				bufs[i] = bufs[i][:cap(bufs[i])]
			}
		})
		if allocs != 0 {
			t.Fatalf("%v allocations per burst pair", allocs)
		}
	}
}

func TestSeveralInterfacesOnOneSocket(t *testing.T) {
	needMemfd(t)
	sock := sockPath(t)
	l, err := Listen(Config{Socket: sock, ID: 1, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Add(Config{ID: 2, Mode: IP, Logger: quietLog}); err != nil {
		t.Fatal(err)
	}
	if err := l.Add(Config{ID: 2}); err == nil {
		t.Fatal("added id 2 twice")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c1, err := Dial(ctx, Config{Socket: sock, ID: 1, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c2, err := Dial(ctx, Config{Socket: sock, ID: 2, Mode: IP, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	byID := map[uint32]*Conn{}
	for i := 0; i < 2; i++ {
		s, err := l.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		byID[s.Config().ID] = s
	}
	if byID[1] == nil || byID[2] == nil || byID[2].Config().Mode != IP {
		t.Fatalf("accepted %v", byID)
	}
	transfer(t, c1, byID[1], 0, [][]byte{frame(1, 100)})
	transfer(t, c2, byID[2], 0, [][]byte{frame(2, 200)})
}

// TestListenerOffersEveryInterfacesQueues: HELLO goes out before the client
// names its interface, so it must offer what the largest interface on the
// socket takes; otherwise a client of the 4-queue interface is cut to 1.
func TestListenerOffersEveryInterfacesQueues(t *testing.T) {
	needMemfd(t)
	sock := sockPath(t)
	l, err := Listen(Config{Socket: sock, ID: 1, Queues: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Add(Config{ID: 2, Queues: 4}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cli, err := Dial(ctx, Config{Socket: sock, ID: 2, Queues: 4})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		srv, err := l.Accept(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if got := cli.NumRxQueues(); got != 4 {
			t.Fatalf("dial %d: client of the 4-queue interface got %d queues", i, got)
		}
		cli.Close()
		srv.Close()
	}
}
