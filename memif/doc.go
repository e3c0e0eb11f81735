// Package memif is a pure-Go memif endpoint: the shared-memory packet
// interface of VPP, libmemif and DPDK's net_memif, protocol version 2.0.
//
// A client dials a server's control socket (a path, or "abstract:NAME" for
// an abstract socket in the caller's network namespace, as VPP and
// Calico/VPP use) and the two sides agree on an interface ID, a mode
// (Ethernet or IP), an optional secret and queue counts. The client creates
// the shared memory (a sealed memfd) and the rings and passes them over the
// socket; packets are then exchanged through the rings without system calls.
//
// Client (e.g. a pod-side endpoint against VPP, which is the server):
//
//	c, err := memif.Dial(ctx, memif.Config{Socket: "abstract:memif-pod", ID: 0, Mode: memif.Ethernet})
//	if err != nil { ... }
//	defer c.Close()
//	bufs := make([][]byte, 32)
//	for i := range bufs { bufs[i] = make([]byte, 9216) }
//	n, err := c.RxBurst(0, bufs) // bufs[:n] are frames
//	m, err := c.TxBurst(0, frames) // frames[:m] were queued
//
// Server:
//
//	l, err := memif.Listen(memif.Config{Socket: "/run/app/memif.sock", ID: 0})
//	defer l.Close()
//	c, err := l.Accept(ctx) // again after c.Done() to serve a reconnecting client
//
// The burst calls never block and do not allocate; each queue is used by
// one goroutine at a time. Polling is the default; with Config.Interrupt
// the peer signals an eventfd and WaitRx blocks until frames may be there.
// Frames longer than one buffer are chained over several descriptors.
//
// Every control message and every descriptor written by the peer is checked
// before use; a peer that breaks the protocol has its connection torn down
// (and the reason logged and sent to it), never crashing this process.
package memif
