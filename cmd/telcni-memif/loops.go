package main

import (
	"context"
	"encoding/binary"
	"errors"
	"runtime"
	"time"

	"github.com/telcni/telcni/memif"
)

const burst = 32

// generate sends -count frames (or until ctx ends) at -rate, cycling the UDP
// source port over -flows values. sentBefore counts frames sent on earlier
// connections, so that -count holds across reconnects.
func generate(ctx context.Context, o *options, c *memif.Conn, sentBefore uint64, tick <-chan time.Time, report func()) (bool, error) {
	ip := o.cfg.Mode == memif.IP
	pkts := make([][]byte, burst)
	for i := range pkts {
		pkts[i] = buildFrame(make([]byte, o.size), o.size, ip, o.srcMAC, o.dstMAC, o.srcIP, o.dstIP, 1024, uint16(o.dstPort))
	}
	off := udpSportOffset(ip)
	sent := sentBefore
	flow := 0
	start := time.Now()
	startSent := sent
	for {
		select {
		case <-ctx.Done():
			return true, nil
		case <-c.Done():
			return false, nil
		case <-tick:
			report()
		default:
		}
		n := burst
		if o.count > 0 {
			if sent >= o.count {
				drain(ctx, c)
				return true, nil
			}
			n = int(min(uint64(n), o.count-sent))
		}
		if o.rate > 0 {
			due := uint64(o.rate*time.Since(start).Seconds()) + 1 - (sent - startSent)
			if due == 0 || due > 1<<62 {
				time.Sleep(50 * time.Microsecond)
				continue
			}
			n = int(min(uint64(n), due))
		}
		for i := 0; i < n; i++ {
			binary.BigEndian.PutUint16(pkts[i][off:], uint16(1024+flow))
			flow++
			if flow == o.flows {
				flow = 0
			}
		}
		m, err := c.TxBurst(0, pkts[:n])
		sent += uint64(m)
		if err != nil {
			if errors.Is(err, memif.ErrClosed) {
				return false, nil
			}
			return false, err
		}
		if m < n {
			// Ring full: rewind the flow counter for the unsent frames
			// and let the peer drain.
			flow = (flow - (n - m) + o.flows*burst) % o.flows
			runtime.Gosched()
		}
	}
}

// receive counts frames on every queue (sink) or answers ARP/ICMP (respond).
func receive(ctx context.Context, mode string, o *options, c *memif.Conn, tick <-chan time.Time, report func()) error {
	bufs := make([][]byte, burst)
	for i := range bufs {
		bufs[i] = make([]byte, o.cfg.MTU)
	}
	replies := make([][]byte, burst)
	replyBufs := make([][]byte, burst)
	for i := range replyBufs {
		replyBufs[i] = make([]byte, o.cfg.MTU)
	}
	ip := o.cfg.Mode == memif.IP
	idle := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.Done():
			return nil
		case <-tick:
			report()
		default:
		}
		got := 0
		for q := 0; q < c.NumRxQueues(); q++ {
			n, err := c.RxBurst(q, bufs)
			if err != nil {
				if errors.Is(err, memif.ErrClosed) {
					return nil
				}
				return err
			}
			got += n
			if mode == "respond" {
				r := 0
				for i := 0; i < n; i++ {
					if out := respond(bufs[i], replyBufs[r], ip, o.mac, o.addr); out != nil {
						replies[r] = out
						r++
					}
				}
				txq := min(q, c.NumTxQueues()-1)
				for sent := 0; sent < r; {
					m, err := c.TxBurst(txq, replies[sent:r])
					if err != nil {
						if errors.Is(err, memif.ErrClosed) {
							return nil
						}
						return err
					}
					sent += m
					if m == 0 {
						runtime.Gosched()
					}
				}
			}
			for i := 0; i < n; i++ {
				bufs[i] = bufs[i][:cap(bufs[i])]
			}
		}
		if got > 0 {
			idle = 0
			continue
		}
		idle++
		switch {
		case o.cfg.Interrupt:
			wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			_ = c.WaitRx(wctx, 0)
			cancel()
		case idle > 1000:
			// Nothing for a while: back off so an idle endpoint does not
			// burn a core (use -interrupt to sleep until traffic).
			time.Sleep(20 * time.Microsecond)
		}
	}
}

// drain waits (up to a second) until the peer has consumed everything
// sent, so that closing does not discard frames still in the ring.
func drain(ctx context.Context, c *memif.Conn) {
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		pending := 0
		for q := 0; q < c.NumTxQueues(); q++ {
			n, err := c.TxPending(q)
			if err != nil {
				return
			}
			pending += n
		}
		if pending == 0 {
			return
		}
		time.Sleep(time.Millisecond)
	}
}
