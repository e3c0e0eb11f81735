package memif

import (
	"errors"
	"sync"

	"golang.org/x/sys/unix"
)

// Errors returned by the burst calls. They are preallocated: the hot path
// must not allocate.
var (
	// ErrClosed: the connection is down (closed locally or by the peer).
	ErrClosed = errors.New("memif: connection closed")
	// ErrFrameTooLarge: pkts[n] is longer than the MTU (or empty); skip it.
	ErrFrameTooLarge = errors.New("memif: frame empty or larger than MTU")
	// ErrPeerMisbehaved: the peer corrupted a ring; the connection is torn down.
	ErrPeerMisbehaved = errors.New("memif: peer wrote an invalid ring state or descriptor")
	// ErrBadQueue: queue index out of range.
	ErrBadQueue = errors.New("memif: no such queue")
)

// QueueStats are the counters of one queue.
type QueueStats struct {
	Packets uint64 // frames received or transmitted
	Bytes   uint64
	Drops   uint64 // rx: frames longer than the caller's buffer
}

// queue is one ring as seen from our side, with the bookkeeping that only
// we write. mu serialises bursts with teardown (which unmaps the memory).
type queue struct {
	// Padding on both sides keeps the fields this queue's goroutine writes
	// off cache lines shared with other queues (an rx and a tx queue of
	// one process are often polled from two cores at once).
	_    [128]byte
	mu   sync.Mutex
	dead bool
	r    ring

	// client: true if we own the buffers (we are the client).
	client bool
	// mem/bufBase/bufSize: where our own buffers for this ring live (client).
	mem     []byte
	bufBase uint32
	bufSize uint32
	bufReg  uint16
	// regions of the connection (server side: the peer's, validated per use).
	regions []*region

	// private cursors
	head uint16 // next slot we publish as head (producer on S2M, refill on M2S)
	tail uint16 // next slot we publish as tail (server producer on M2S)
	last uint16 // next slot we consume

	mtu   int
	evfd  int
	one   [8]byte
	stats QueueStats
	// scratch for server tx: validated (offset, len) of descriptors of one frame
	chunks []chunk
	_      [128]byte
}

type chunk struct {
	mem []byte
	off uint32
	cap uint32
}

func (q *queue) signal() {
	if q.r.flags()&ringFlagMask == 0 && q.evfd >= 0 {
		_, _ = unix.Write(q.evfd, q.one[:])
	}
}

// peerBuf validates a descriptor's buffer reference against the peer's regions.
func (q *queue) peerBuf(region uint16, off, n uint32) ([]byte, bool) {
	if int(region) >= len(q.regions) {
		return nil, false
	}
	mem := q.regions[region].mem
	if uint64(off)+uint64(n) > uint64(len(mem)) {
		return nil, false
	}
	return mem, true
}

func (q *queue) ownOff(slot uint16) uint32 {
	return q.bufBase + uint32(slot&q.r.mask)*q.bufSize
}

// txClient: we produce on an S2M ring with our own buffers.
func (q *queue) txClient(pkts [][]byte) (int, error) {
	r := &q.r
	head := q.head
	used := head - r.tail()
	if used > r.size {
		return 0, ErrPeerMisbehaved
	}
	free := int(r.size - used)
	bs := int(q.bufSize)
	slot := head
	sent := 0
	var err error
	for _, p := range pkts {
		if len(p) == 0 || len(p) > q.mtu {
			err = ErrFrameTooLarge
			break
		}
		need := (len(p) + bs - 1) / bs
		if need > free {
			break
		}
		for off := 0; off < len(p); {
			n := min(bs, len(p)-off)
			bo := q.ownOff(slot)
			copy(q.mem[bo:int(bo)+n], p[off:off+n])
			d := &r.descs[slot&r.mask]
			d.region = q.bufReg
			d.offset = bo
			d.length = uint32(n)
			off += n
			if off < len(p) {
				d.flags = descFlagNext
			} else {
				d.flags = 0
			}
			slot++
		}
		free -= need
		sent++
		q.stats.Bytes += uint64(len(p))
	}
	if sent > 0 {
		r.setHead(slot)
		q.head = slot
		q.stats.Packets += uint64(sent)
		q.signal()
	}
	return sent, err
}

// txServer: we produce on an M2S ring into buffers the client handed us.
func (q *queue) txServer(pkts [][]byte) (int, error) {
	r := &q.r
	slot := q.tail
	avail := r.head() - slot
	if avail > r.size {
		return 0, ErrPeerMisbehaved
	}
	sent := 0
	var err error
	for _, p := range pkts {
		if len(p) == 0 || len(p) > q.mtu {
			err = ErrFrameTooLarge
			break
		}
		// First validate the descriptors this frame needs (the peer may
		// change them at any time: read each once into chunks).
		q.chunks = q.chunks[:0]
		s := slot
		for rem := len(p); rem > 0; {
			if s-slot >= avail {
				goto done // not enough buffers for the whole frame
			}
			d := &r.descs[s&r.mask]
			reg, off, c := d.region, d.offset, d.length
			mem, ok := q.peerBuf(reg, off, c)
			if !ok || c == 0 {
				return sent, q.finishTx(slot, sent, ErrPeerMisbehaved)
			}
			q.chunks = append(q.chunks, chunk{mem: mem, off: off, cap: c})
			rem -= min(rem, int(c))
			s++
		}
		{
			off := 0
			for i, c := range q.chunks {
				n := min(int(c.cap), len(p)-off)
				copy(c.mem[c.off:int(c.off)+n], p[off:off+n])
				d := &r.descs[(slot+uint16(i))&r.mask]
				d.length = uint32(n)
				off += n
				if i < len(q.chunks)-1 {
					d.flags = descFlagNext
				} else {
					d.flags = 0
				}
			}
		}
		avail -= s - slot
		slot = s
		sent++
		q.stats.Bytes += uint64(len(p))
	}
done:
	return sent, q.finishTx(slot, sent, err)
}

func (q *queue) finishTx(slot uint16, sent int, err error) error {
	if sent > 0 {
		q.r.setTail(slot)
		q.tail = slot
		q.stats.Packets += uint64(sent)
		q.signal()
	}
	return err
}

// rx consumes frames. On an S2M ring (we are server) the available slots end
// at head and descriptors point into the peer's regions; on an M2S ring (we
// are client) they end at tail and point into our own buffers, whose place
// we know, so we only trust the peer's length and flags.
func (q *queue) rx(bufs [][]byte) (int, error) {
	r := &q.r
	cur := q.last
	var end uint16
	if q.client {
		end = r.tail()
		if end-cur > q.head-cur { // tail beyond the buffers we handed out
			return 0, ErrPeerMisbehaved
		}
	} else {
		end = r.head()
		if end-cur > r.size {
			return 0, ErrPeerMisbehaved
		}
	}
	got := 0
	for got < len(bufs) && cur != end {
		dst := bufs[got][:cap(bufs[got])]
		total := 0
		drop := false
		s := cur
		for {
			if s == end {
				// The producer published a partial chain; wait for the rest.
				goto out
			}
			d := &r.descs[s&r.mask]
			fl, n := d.flags, d.length
			var src []byte
			if q.client {
				if n > q.bufSize {
					return got, q.finishRx(cur, got, ErrPeerMisbehaved)
				}
				bo := q.ownOff(s)
				src = q.mem[bo : bo+n]
			} else {
				reg, off := d.region, d.offset
				mem, ok := q.peerBuf(reg, off, n)
				if !ok {
					return got, q.finishRx(cur, got, ErrPeerMisbehaved)
				}
				src = mem[off : off+n]
				// DPDK 22.11's client transmit path sets NEXT but never
				// clears it when it reuses a slot; clear it for them once
				// read (the slot is ours until we publish tail).
				if fl&descFlagNext != 0 {
					d.flags = 0
				}
			}
			if total+len(src) <= len(dst) && !drop {
				copy(dst[total:], src)
			} else {
				drop = true
			}
			total += len(src)
			s++
			if fl&descFlagNext == 0 {
				break
			}
			if s-cur >= r.size {
				return got, q.finishRx(cur, got, ErrPeerMisbehaved)
			}
		}
		cur = s
		if drop {
			q.stats.Drops++
			continue
		}
		bufs[got] = dst[:total]
		got++
		q.stats.Bytes += uint64(total)
	}
out:
	return got, q.finishRx(cur, got, nil)
}

func (q *queue) finishRx(cur uint16, got int, err error) error {
	r := &q.r
	if cur != q.last {
		q.last = cur
		if q.client {
			q.refill()
		} else {
			r.setTail(cur)
		}
	}
	q.stats.Packets += uint64(got)
	return err
}

// refill hands every consumed buffer back to the server (client, M2S ring).
func (q *queue) refill() {
	r := &q.r
	h := q.head
	for h != q.last+r.size {
		d := &r.descs[h&r.mask]
		d.region = q.bufReg
		d.offset = q.ownOff(h)
		d.length = q.bufSize
		d.flags = 0
		h++
	}
	if h != q.head {
		r.setHead(h)
		q.head = h
	}
}

// pending tells whether frames are waiting (used by WaitRx).
func (q *queue) pending() bool {
	if q.client {
		return q.r.tail() != q.last
	}
	return q.r.head() != q.last
}
