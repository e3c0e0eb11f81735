package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/telcni/telcni/memif"
)

// ping sends -count ICMP echo requests from -ip to -dst through the memif
// (ethernet mode: after resolving the next hop -via, or -dst, with ARP),
// printing each reply as ping(8) does. It answers ARP and echo requests
// for -ip meanwhile: the peer (VPP) must resolve us to deliver the reply.
// done is true once every request was sent; as with ping(8), err reports
// only that no reply came at all (a routed peer drops the first request
// while it resolves the destination).
func ping(ctx context.Context, o *options, c *memif.Conn) (bool, error) {
	ipMode := o.cfg.Mode == memif.IP
	in := make([][]byte, burst)
	for i := range in {
		in[i] = make([]byte, o.cfg.MTU)
	}
	out := make([]byte, o.cfg.MTU)
	send := func(f []byte) error {
		for {
			n, err := c.TxBurst(0, [][]byte{f})
			if err != nil || n == 1 {
				return err
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	// poll receives for up to d, answering requests for us, until match
	// accepts a frame.
	poll := func(d time.Duration, match func([]byte) bool) (bool, error) {
		deadline := time.Now().Add(d)
		for time.Now().Before(deadline) {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			n, err := c.RxBurst(0, in)
			if err != nil {
				return false, err
			}
			found := false
			for i := 0; i < n; i++ {
				f := in[i]
				if r := respond(f, out, ipMode, o.mac, o.addr); r != nil {
					if err := send(r); err != nil {
						return false, err
					}
				} else if match(f) {
					found = true
				}
				in[i] = in[i][:cap(in[i])]
			}
			if found {
				return true, nil
			}
			if n == 0 {
				time.Sleep(200 * time.Microsecond)
			}
		}
		return false, nil
	}

	var peerMAC [6]byte
	if !ipMode {
		ok := false
		for try := 0; try < 10 && !ok; try++ {
			if err := send(arpRequest(out, o.mac, o.addr, o.via)); err != nil {
				return false, err
			}
			var err error
			ok, err = poll(500*time.Millisecond, func(f []byte) bool { return arpReplyFrom(f, o.via, &peerMAC) })
			if err != nil {
				return false, err
			}
		}
		if !ok {
			return true, fmt.Errorf("no ARP reply for next hop %s", o.via)
		}
	}
	id := uint16(os.Getpid())
	fmt.Printf("PING %s from %s via memif %s\n", o.dstIP, o.addr, o.cfg.Socket)
	received := 0
	for seq := uint16(1); seq <= uint16(o.count); seq++ {
		start := time.Now()
		if err := send(echoRequest(out, ipMode, o.mac, peerMAC, o.addr, o.dstIP, id, seq, echoPayload)); err != nil {
			return false, err
		}
		ok, err := poll(time.Second, func(f []byte) bool { return isEchoReply(f, ipMode, o.dstIP, id, seq) })
		if err != nil {
			return false, err
		}
		if ok {
			received++
			fmt.Printf("reply from %s: icmp_seq=%d time=%.3f ms\n", o.dstIP, seq, float64(time.Since(start).Microseconds())/1000)
		} else {
			fmt.Printf("no reply from %s: icmp_seq=%d\n", o.dstIP, seq)
		}
	}
	fmt.Printf("%d packets transmitted, %d received\n", o.count, received)
	if received == 0 {
		return true, fmt.Errorf("no echo reply from %s", o.dstIP)
	}
	return true, nil
}

// arpRequest writes an ARP request for target into b.
func arpRequest(b []byte, mac [6]byte, src, target netip.Addr) []byte {
	f := b[:ethHdr+28]
	clear(f)
	copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:12], mac[:])
	binary.BigEndian.PutUint16(f[12:], etherTypeARP)
	a := f[ethHdr:]
	binary.BigEndian.PutUint16(a[0:], 1)
	binary.BigEndian.PutUint16(a[2:], etherTypeIP)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:], 1)
	copy(a[8:14], mac[:])
	s, t := src.As4(), target.As4()
	copy(a[14:18], s[:])
	copy(a[24:28], t[:])
	return f
}

// arpReplyFrom reports whether f is an ARP reply from target, and keeps
// its MAC.
func arpReplyFrom(f []byte, target netip.Addr, mac *[6]byte) bool {
	if len(f) < ethHdr+28 || binary.BigEndian.Uint16(f[12:]) != etherTypeARP {
		return false
	}
	a := f[ethHdr:]
	if binary.BigEndian.Uint16(a[6:]) != 2 || [4]byte(a[14:18]) != target.As4() {
		return false
	}
	copy(mac[:], a[8:14])
	return true
}

const echoPayload = 56

// echoRequest writes an ICMP echo request with payload bytes of data into b:
// a bare IPv4 packet in ip mode, else an Ethernet frame.
func echoRequest(b []byte, ipMode bool, srcMAC, dstMAC [6]byte, src, dst netip.Addr, id, seq uint16, payload int) []byte {
	off := 0
	if !ipMode {
		off = ethHdr
		copy(b[0:6], dstMAC[:])
		copy(b[6:12], srcMAC[:])
		binary.BigEndian.PutUint16(b[12:], etherTypeIP)
	}
	total := 20 + 8 + payload
	p := ipv4(b[off:], total, protoICMP, src, dst)
	ic := p[20:]
	ic[0] = 8
	binary.BigEndian.PutUint16(ic[4:], id)
	binary.BigEndian.PutUint16(ic[6:], seq)
	for i := range payload {
		ic[8+i] = byte(8 + i)
	}
	binary.BigEndian.PutUint16(ic[2:], checksum(ic))
	return b[:off+total]
}

func isEchoReply(f []byte, ipMode bool, from netip.Addr, id, seq uint16) bool {
	if !ipMode {
		if len(f) < ethHdr || binary.BigEndian.Uint16(f[12:]) != etherTypeIP {
			return false
		}
		f = f[ethHdr:]
	}
	if len(f) < 28 || f[0]>>4 != 4 || f[9] != protoICMP || [4]byte(f[12:16]) != from.As4() {
		return false
	}
	ic := f[int(f[0]&0xf)*4:]
	return len(ic) >= 8 && ic[0] == 0 && binary.BigEndian.Uint16(ic[4:]) == id && binary.BigEndian.Uint16(ic[6:]) == seq
}
