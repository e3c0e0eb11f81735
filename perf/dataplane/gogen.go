package dataplane

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/telcni/telcni/memif"
)

// port is one side of a software generator: bursts in and out, never
// blocking (recv returns 0 when nothing is waiting).
type port interface {
	send(frames [][]byte) (int, error)
	recv(bufs [][]byte) (int, error)
	close() error
}

type memifPort struct{ c *memif.Conn }

func (p memifPort) send(f [][]byte) (int, error) { return p.c.TxBurst(0, f) }
func (p memifPort) recv(b [][]byte) (int, error) {
	n := 0
	for q := 0; q < p.c.NumRxQueues() && n < len(b); q++ {
		k, err := p.c.RxBurst(q, b[n:])
		if err != nil {
			return n, err
		}
		n += k
	}
	return n, nil
}
func (p memifPort) close() error { return p.c.Close() }

// dialMemif connects the Go generator's port to a memif server (a pod's
// socket served by VPP) as the pod would.
func dialMemif(ctx context.Context, socket string, id uint32, name string) (port, error) {
	c, err := memif.Dial(ctx, memif.Config{Socket: socket, ID: id, Mode: memif.Ethernet, Name: name, Log2RingSize: 14}) // as TRex: the most memif allows
	if err != nil {
		return nil, err
	}
	return memifPort{c}, nil
}

// goGen is the Go software generator: it sends stamped frames on tx at a
// paced rate and counts this trial's frames arriving on rx, with their
// latency. It implements search.Trialer.
type goGen struct {
	tx, rx  port
	addr    Addressing
	profile Profile
	// Settle is how long rx must stay quiet after the last frame was sent
	// before the trial is counted.
	settle time.Duration

	trial uint32
	epoch time.Time
	last  *histogram // latency of the last trial
}

func newGoGen(tx, rx port, a Addressing) *goGen {
	return &goGen{tx: tx, rx: rx, addr: a, settle: 100 * time.Millisecond, epoch: time.Now()}
}

func (g *goGen) setProfile(p Profile) { g.profile = p }

// prime sends a few frames from port 1 to port 0 so that a learning
// bridge knows where port 1's MAC is, as a pod that has spoken once.
func (g *goGen) prime(ctx context.Context) error {
	f := g.addr.reverse()
	if f == nil {
		return nil
	}
	for i := 0; i < 3; i++ {
		if _, err := g.rx.send([][]byte{f}); err != nil {
			return fmt.Errorf("prime: %w", err)
		}
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(50 * time.Millisecond):
	}
	bufs := bufsOf(32)
	for {
		n, _ := g.tx.recv(bufs) // drain what was flooded back
		if n == 0 {
			return nil
		}
	}
}

func bufsOf(n int) [][]byte {
	b := make([][]byte, n)
	for i := range b {
		b[i] = make([]byte, 2048)
	}
	return b
}

// Trial offers round(rate*d) frames over d; frames the generator could not
// place (a full ring: the device did not take them) count as sent and
// lost, so a trial never claims a rate that was not carried. Sending and
// receiving share one loop (one busy thread beside the device's on a small
// machine): it sends what is due, then polls the receiver.
func (g *goGen) Trial(ctx context.Context, rate float64, d time.Duration) (uint64, uint64, error) {
	if len(g.profile.Sizes) == 0 {
		return 0, 0, errors.New("go generator: no profile")
	}
	// One CPU for the generator's loop, the other left to the device
	// (VPP's main loop, or the kernel's softirqs).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var orig unix.CPUSet
	if unix.SchedGetaffinity(0, &orig) == nil && orig.Count() > 1 {
		var one unix.CPUSet
		one.Set(0)
		if unix.SchedSetaffinity(0, &one) == nil {
			defer unix.SchedSetaffinity(0, &orig)
		}
	}
	g.trial++
	trial := g.trial
	total := uint64(rate*d.Seconds() + 0.5)
	hist := &histogram{}
	g.last = hist

	pattern := g.profile.pattern()
	burst := int(min(32, max(1, rate/20000)))
	frames := make([][]byte, burst)
	for i := range frames {
		frames[i] = make([]byte, 0, 2048)
	}
	templates := make([][]byte, len(pattern))
	for i, s := range pattern {
		templates[i] = g.addr.frame(s)
	}
	bufs := bufsOf(256)
	var sent, received uint64
	next := 0
	start := time.Now()
	deadline := start.Add(d + d/20)
	var quiet time.Time // when the last frame was sent or received after sending ended
	for {
		if err := ctx.Err(); err != nil {
			return 0, 0, err
		}
		now := time.Now()
		sending := sent < total && now.Before(deadline)
		if sending {
			due := min(total, uint64(rate*now.Sub(start).Seconds())+1)
			for sent < due {
				k := int(min(uint64(burst), due-sent))
				ns := int64(time.Since(g.epoch))
				for i := 0; i < k; i++ {
					t := templates[next]
					next = (next + 1) % len(templates)
					frames[i] = append(frames[i][:0], t...)
					stamp(frames[i], trial, ns)
				}
				// A full ring is not an error: the frames not taken are lost.
				if _, err := g.tx.send(frames[:k]); err != nil {
					return 0, 0, fmt.Errorf("go generator: send: %w", err)
				}
				sent += uint64(k)
			}
			quiet = time.Now()
		}
		// Drain the receive ring: the device drops what finds it full.
		n := 0
		for {
			k, err := g.rx.recv(bufs)
			if err != nil {
				return 0, 0, fmt.Errorf("go generator: receive: %w", err)
			}
			rxNow := int64(time.Since(g.epoch))
			for i := 0; i < k; i++ {
				if tr, ns, ok := readStamp(bufs[i]); ok && tr == trial {
					received++
					hist.add(time.Duration(rxNow - ns))
				}
				bufs[i] = bufs[i][:cap(bufs[i])]
			}
			n += k
			if k < len(bufs) {
				break
			}
		}
		if n > 0 {
			if !sending {
				quiet = time.Now()
			}
			continue
		}
		if !sending && time.Since(quiet) >= g.settle {
			// Frames never placed before the deadline count as lost.
			return total, received, nil
		}
		if sending {
			// Idle until the next frame is due: yield, or sleep when that
			// is far enough away to be worth a timer.
			if wait := time.Duration(float64(time.Second) / rate); wait > 200*time.Microsecond {
				time.Sleep(wait / 2)
			} else {
				runtime.Gosched()
			}
		} else {
			runtime.Gosched()
		}
	}
}
