// Command memifbench measures memif throughput side by side in one run:
// DPDK testpmd txonly -> testpmd rxonly (the baseline), testpmd -> Go
// receiver, Go transmitter -> testpmd, and Go -> Go, for 64- and 1500-byte
// frames. Each party gets one busy core: the transmitter's forwarding loop
// runs on CPU 0 and the receiver's on CPU 1, whoever implements them. The
// transmitter is the memif server and the receiver the client in every
// scenario. It prints a table (Mpps at the receiver, the ratio to the
// baseline, allocations per packet of the Go side) and, last, the line
// `memif-ratio go_rx=<x> go_tx=<y>` for 64-byte frames.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/telcni/telcni/internal/testpmd"
	"github.com/telcni/telcni/memif"
	"golang.org/x/sys/unix"
)

type scenario int

const (
	baseline scenario = iota
	goRx
	goTx
	goGo
)

var names = map[scenario]string{
	baseline: "testpmd txonly -> testpmd rxonly",
	goRx:     "testpmd txonly -> Go rx",
	goTx:     "Go tx -> testpmd rxonly",
	goGo:     "Go tx -> Go rx",
}

type sample struct {
	mpps   float64
	allocs float64 // Go allocations per packet in the window, -1 if no Go side
	// Packets per second of CPU time actually given to the receiver's and
	// the transmitter's polling thread: what each would do on a core of
	// its own. On a shared machine the wall-clock rate mostly measures the
	// neighbours; these do not.
	rxEff, txEff float64
}

func main() {
	dur := flag.Duration("duration", time.Second, "measurement window per run")
	warm := flag.Duration("warmup", 500*time.Millisecond, "traffic before the window opens")
	rounds := flag.Int("rounds", 5, "runs per scenario (the median is reported)")
	only := flag.String("only", "", "run only these scenarios (comma-separated: baseline,gorx,gotx,gogo), for investigation")
	flag.Parse()
	if err := run(*dur, *warm, *rounds, *only); err != nil {
		fmt.Fprintln(os.Stderr, "memifbench:", err)
		os.Exit(1)
	}
}

func run(dur, warm time.Duration, rounds int, only string) error {
	env, err := testpmd.Find()
	if err != nil {
		return err
	}
	if runtime.NumCPU() < 2 {
		return fmt.Errorf("need 2 CPUs, have %d", runtime.NumCPU())
	}
	// The packet loops are locked to their threads and pinned to CPU 0 and
	// 1. Go preempts any goroutine every 10 ms; a preempted locked
	// goroutine gets its P back only through another P, so with every P
	// held by a pinned loop each preemption stalls it (Go -> Go ran 3-6x
	// slower). One spare P fixes that without adding a busy core: nothing
	// else in this process is busy.
	runtime.GOMAXPROCS(runtime.NumCPU() + 1)
	dir, err := os.MkdirTemp("", "memifbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b := &bench{env: env, dir: dir, dur: dur, warm: warm}
	loadStart := loadavg()
	sizes := []int{64, 1500}
	order := []scenario{baseline, goRx, goTx, goGo}
	if only != "" {
		keys := map[string]scenario{"baseline": baseline, "gorx": goRx, "gotx": goTx, "gogo": goGo}
		order = nil
		for _, k := range strings.Split(only, ",") {
			sc, ok := keys[k]
			if !ok {
				return fmt.Errorf("-only: unknown scenario %q", k)
			}
			order = append(order, sc)
		}
	}
	res := map[scenario]map[int][]sample{}
	// Rounds interleave the scenarios so that load from other users of the
	// machine spreads over all of them rather than hitting one.
	for r := 0; r < rounds; r++ {
		for _, size := range sizes {
			for _, sc := range order {
				s, err := b.run(sc, size)
				if err != nil {
					return fmt.Errorf("%s, %d bytes: %w", names[sc], size, err)
				}
				fmt.Fprintf(os.Stderr, "round %d: %-34s %5d B  %6.2f Mpps  (rx %6.2f, tx %6.2f Mpps per CPU-second)\n",
					r+1, names[sc], size, s.mpps, s.rxEff, s.txEff)
				if res[sc] == nil {
					res[sc] = map[int][]sample{}
				}
				res[sc][size] = append(res[sc][size], s)
			}
		}
	}
	// The machine may be shared: say how busy it was, since absolute rates
	// then say more about the neighbours than about memif.
	fmt.Printf("\nload average (1/5/15 min) at start: %s, at end: %s, CPUs: %d\n", loadStart, loadavg(), runtime.NumCPU())
	fmt.Printf("\n| scenario | frame | Mpps at receiver, wall clock (median of %d; best) | receiver Mpps per CPU-second (median) | transmitter Mpps per CPU-second (median) | Go allocs/packet (worst run) |\n|---|---|---|---|---|---|\n", rounds)
	for _, size := range sizes {
		for _, sc := range order {
			allocs := "-"
			if sc != baseline {
				allocs = fmt.Sprintf("%.4f", maxAllocs(res[sc][size]))
			}
			fmt.Printf("| %s | %d B | %.2f; %.2f | %.2f | %.2f | %s |\n", names[sc], size,
				med(res[sc][size], mpps), best(res[sc][size]),
				med(res[sc][size], rxEff), med(res[sc][size], txEff), allocs)
		}
	}
	if only != "" {
		return nil // the ratio line needs every scenario
	}
	// Each comparison holds one side fixed (testpmd txonly feeds both
	// receivers; testpmd rxonly drains both transmitters) and divides by
	// the CPU time the side under test was actually given, so that load
	// from other users of the machine cancels out.
	rx := med(res[goRx][64], rxEff) / med(res[baseline][64], rxEff)
	tx := med(res[goTx][64], txEff) / med(res[baseline][64], txEff)
	fmt.Printf("\nwall-clock ratios (best of %d, noisy on a shared machine): go_rx=%.2f go_tx=%.2f\n", rounds,
		best(res[goRx][64])/best(res[baseline][64]), best(res[goTx][64])/best(res[baseline][64]))
	fmt.Printf("\nmemif-ratio go_rx=%.2f go_tx=%.2f\n", rx, tx)
	return nil
}

type bench struct {
	env       *testpmd.Env
	dir       string
	dur, warm time.Duration
	n         int
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func (b *bench) run(sc scenario, size int) (sample, error) {
	b.n++
	sock := filepath.Join(b.dir, fmt.Sprintf("s%d.sock", b.n))
	vdev := func(role string) string {
		return "net_memif0,role=" + role + ",id=0,socket-abstract=no,bsize=2048,rsize=10,socket=" + sock
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pid := os.Getpid()
	// Transmitter: server, forwarding on CPU 0 (testpmd's prompt on CPU 1).
	var txp, rxp *testpmd.Proc
	var err error
	if sc == baseline || sc == goRx {
		txp, err = b.env.Start(ctx, testpmd.Options{Name: fmt.Sprintf("mb-tx-%d", pid), Lcores: "0,1", MainCore: 1,
			Vdev: vdev("server"), Args: []string{"--forward-mode=txonly", fmt.Sprintf("--txpkts=%d", size), "--burst=32"}})
		if err != nil {
			return sample{}, err
		}
		defer txp.Quit()
	}
	var goTxConn, goRxConn *memif.Conn
	var ln *memif.Listener
	if sc == goTx || sc == goGo {
		ln, err = memif.Listen(memif.Config{Socket: sock, Logger: quiet})
		if err != nil {
			return sample{}, err
		}
		defer ln.Close()
	}
	// Receiver: client, forwarding on CPU 1.
	if sc == baseline || sc == goTx {
		rxp, err = b.env.Start(ctx, testpmd.Options{Name: fmt.Sprintf("mb-rx-%d", pid), Lcores: "0,1", MainCore: 0,
			Vdev: vdev("client"), Args: []string{"--forward-mode=rxonly", "--burst=32"}})
		if err != nil {
			return sample{}, err
		}
		defer rxp.Quit()
	} else {
		goRxConn, err = memif.Dial(ctx, memif.Config{Socket: sock, Logger: quiet})
		if err != nil {
			return sample{}, err
		}
		defer goRxConn.Close()
	}
	if ln != nil {
		goTxConn, err = ln.Accept(ctx)
		if err != nil {
			return sample{}, err
		}
		defer goTxConn.Close()
	}
	for _, p := range []*testpmd.Proc{txp, rxp} {
		if p != nil {
			if err := p.WaitLinkUp(10 * time.Second); err != nil {
				return sample{}, err
			}
		}
	}

	var loops sync.WaitGroup
	stop := make(chan struct{})
	defer func() { close(stop); loops.Wait() }()
	var rxCount atomic.Uint64
	var rxTid, txTid atomic.Int64
	if goRxConn != nil {
		loops.Add(1)
		go func() { defer loops.Done(); rxLoop(goRxConn, 1, stop, &rxCount, &rxTid) }()
	}
	if rxp != nil {
		if _, err := rxp.Cmd("start"); err != nil {
			return sample{}, err
		}
	}
	if goTxConn != nil {
		loops.Add(1)
		go func() { defer loops.Done(); txLoop(goTxConn, 0, size, stop, &txTid) }()
	}
	if txp != nil {
		if _, err := txp.Cmd("start"); err != nil {
			return sample{}, err
		}
	}
	time.Sleep(b.warm)
	rxCPU, err := threadClock(rxp, &rxTid)
	if err != nil {
		return sample{}, err
	}
	txCPU, err := threadClock(txp, &txTid)
	if err != nil {
		return sample{}, err
	}

	count := func() (uint64, time.Time, error) {
		if rxp != nil {
			st, err := rxp.PortStats()
			return st.RxPackets, st.At, err
		}
		return rxCount.Load(), time.Now(), nil
	}
	// The allocation window sits inside the counting window so that only
	// the packet loops (not the parsing of testpmd's answers) are in it.
	var ms0, ms1 runtime.MemStats
	c0, t0, err := count()
	if err != nil {
		return sample{}, err
	}
	rx0, tx0 := rxCPU(), txCPU()
	runtime.ReadMemStats(&ms0)
	time.Sleep(b.dur)
	runtime.ReadMemStats(&ms1)
	rx1, tx1 := rxCPU(), txCPU()
	c1, t1, err := count()
	if err != nil {
		return sample{}, err
	}
	pkts := c1 - c0
	s := sample{mpps: float64(pkts) / t1.Sub(t0).Seconds() / 1e6, allocs: -1}
	// The CPU window sits inside the packet window: scale the packet count
	// to it by wall time (the rate is steady once warmed up).
	inner := s.mpps * 1e6 * b.dur.Seconds()
	if d := rx1 - rx0; d > 0 {
		s.rxEff = inner / d.Seconds() / 1e6
	}
	if d := tx1 - tx0; d > 0 {
		s.txEff = inner / d.Seconds() / 1e6
	}
	if sc != baseline && pkts > 0 {
		s.allocs = float64(ms1.Mallocs-ms0.Mallocs) / float64(pkts)
	}
	return s, nil
}

// pin locks the calling goroutine to its thread and the thread to cpu.
func pin(cpu int) {
	runtime.LockOSThread()
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		fmt.Fprintln(os.Stderr, "memifbench: pin to cpu", cpu, ":", err)
	}
}

func rxLoop(c *memif.Conn, cpu int, stop <-chan struct{}, count *atomic.Uint64, tid *atomic.Int64) {
	pin(cpu)
	tid.Store(int64(unix.Gettid()))
	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	for i := 0; ; i++ {
		if i&1023 == 0 {
			select {
			case <-stop:
				return
			default:
			}
		}
		n, err := c.RxBurst(0, bufs)
		if err != nil {
			return
		}
		if n > 0 {
			count.Add(uint64(n))
			for j := 0; j < n; j++ {
				bufs[j] = bufs[j][:cap(bufs[j])]
			}
		}
	}
}

func txLoop(c *memif.Conn, cpu, size int, stop <-chan struct{}, tid *atomic.Int64) {
	pin(cpu)
	tid.Store(int64(unix.Gettid()))
	pkts := make([][]byte, 32)
	for i := range pkts {
		p := make([]byte, size)
		copy(p, []byte{0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x88, 0xb5})
		pkts[i] = p
	}
	for i := 0; ; i++ {
		if i&1023 == 0 {
			select {
			case <-stop:
				return
			default:
			}
		}
		if _, err := c.TxBurst(0, pkts); err != nil {
			return
		}
	}
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func best(s []sample) float64 {
	b := math.NaN()
	for _, x := range s {
		if math.IsNaN(b) || x.mpps > b {
			b = x.mpps
		}
	}
	return b
}

// maxAllocs is the worst allocations-per-packet figure over the runs.
func maxAllocs(s []sample) float64 {
	m := 0.0
	for _, x := range s {
		m = max(m, x.allocs)
	}
	return m
}

// threadClock returns a reader of the CPU time used so far by the polling
// thread of one side: testpmd's forwarding lcore if p is set, else our
// own loop's thread (whose id the loop published in tid).
func threadClock(p *testpmd.Proc, tid *atomic.Int64) (func() time.Duration, error) {
	path := ""
	if p != nil {
		t, err := p.WorkerThread()
		if err != nil {
			return nil, err
		}
		path = fmt.Sprintf("/proc/%d/task/%d/schedstat", p.Pid(), t)
	} else {
		t := tid.Load()
		if t == 0 {
			return nil, fmt.Errorf("polling loop did not start")
		}
		path = fmt.Sprintf("/proc/self/task/%d/schedstat", t)
	}
	if _, err := os.ReadFile(path); err != nil {
		return nil, fmt.Errorf("thread CPU time: %w", err)
	}
	return func() time.Duration {
		b, err := os.ReadFile(path)
		if err != nil {
			return 0
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			return 0
		}
		ns, _ := strconv.ParseInt(f[0], 10, 64)
		return time.Duration(ns)
	}, nil
}

func mpps(s sample) float64  { return s.mpps }
func rxEff(s sample) float64 { return s.rxEff }
func txEff(s sample) float64 { return s.txEff }

// med is the median of one figure over the runs.
func med(s []sample, f func(sample) float64) float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	v := make([]float64, len(s))
	for i, x := range s {
		v[i] = f(x)
	}
	sort.Float64s(v)
	return v[len(v)/2]
}
