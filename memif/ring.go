package memif

import (
	"sync/atomic"
	"unsafe"
)

// Ring layout (memif.h memif_ring_t, 64-byte cache lines):
//
//	0   cookie  uint32
//	4   flags   uint16   written by the receiver (interrupt mask)
//	6   head    uint16   written by the ring's producer side (see below)
//	64  tail    uint16
//	128 desc[1<<log2]    16 bytes each
//
// The client owns all memory. On an S2M ring the client produces: it fills
// descriptors and advances head; the server consumes and advances tail. On
// an M2S ring the client advances head to hand empty buffers to the server,
// the server fills them and advances tail, the client consumes up to tail.
const (
	ringHdrSize = 128
	descSize    = 16
	offFlags    = 4 // 32-bit word holding flags (low half) and head (high half)
	offTail     = 64
)

// desc mirrors memif_desc_t; Go lays it out without padding.
type desc struct {
	flags    uint16
	region   uint16
	length   uint32
	offset   uint32
	metadata uint32
}

func ringBytes(log2 uint8) uint64 { return ringHdrSize + descSize<<log2 }

// ring is a view of one ring in a mapped region. Head and tail are 16-bit
// fields shared with another process; Go has no 16-bit atomics, so they are
// accessed through the aligned 32-bit words that contain them (x86 and arm64
// are little-endian: flags is the low half of the word at offset 4).
type ring struct {
	base  unsafe.Pointer
	descs []desc
	size  uint16 // slots, at most 1<<14: free-running uint16 indexes wrap cleanly
	mask  uint16
}

func newRing(mem []byte, off uint32, log2 uint8) ring {
	base := unsafe.Pointer(&mem[off])
	n := 1 << log2
	return ring{
		base:  base,
		descs: unsafe.Slice((*desc)(unsafe.Add(base, ringHdrSize)), n),
		size:  uint16(n),
		mask:  uint16(n - 1),
	}
}

func (r *ring) word4() *uint32 { return (*uint32)(unsafe.Add(r.base, offFlags)) }

func (r *ring) cookie() uint32 { return atomic.LoadUint32((*uint32)(r.base)) }

func (r *ring) head() uint16  { return uint16(atomic.LoadUint32(r.word4()) >> 16) }
func (r *ring) flags() uint16 { return uint16(atomic.LoadUint32(r.word4())) }
func (r *ring) tail() uint16 {
	return uint16(atomic.LoadUint32((*uint32)(unsafe.Add(r.base, offTail))))
}

// setHead publishes a new head with release semantics, leaving flags (which
// the other side may write) untouched.
func (r *ring) setHead(h uint16) {
	p := r.word4()
	for {
		o := atomic.LoadUint32(p)
		if atomic.CompareAndSwapUint32(p, o, o&0xffff|uint32(h)<<16) {
			return
		}
	}
}

func (r *ring) setFlags(f uint16) {
	p := r.word4()
	for {
		o := atomic.LoadUint32(p)
		if atomic.CompareAndSwapUint32(p, o, o&0xffff0000|uint32(f)) {
			return
		}
	}
}

// setTail publishes tail. The two bytes after it in the word are padding.
func (r *ring) setTail(t uint16) {
	atomic.StoreUint32((*uint32)(unsafe.Add(r.base, offTail)), uint32(t))
}

// initRing writes a fresh ring header (client side, before the peer maps it).
func (r *ring) init() {
	atomic.StoreUint32((*uint32)(r.base), ringCookie)
	atomic.StoreUint32(r.word4(), 0)
	atomic.StoreUint32((*uint32)(unsafe.Add(r.base, offTail)), 0)
}
