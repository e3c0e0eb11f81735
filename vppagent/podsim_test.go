package vppagent

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/telcni/telcni/memif"
)

// podSim is a pod application on a memif (ethernet mode): it answers ARP
// for its address and ICMP echo, and pings. When its memif goes down (VPP
// restarted) it dials again, as a real pod application would.
type podSim struct {
	cfg memif.Config
	mac net.HardwareAddr
	ip  netip.Addr
	ip6 netip.Addr // optional

	mu        sync.Mutex
	conn      *memif.Conn
	neighbors map[netip.Addr]net.HardwareAddr
	replies   map[uint16]bool // echo replies seen, by sequence number
	connects  atomic.Int32
}

func newPodSim(cfg memif.Config, mac string, ip netip.Addr) *podSim {
	hw, _ := net.ParseMAC(mac)
	cfg.Interrupt = true
	cfg.HandshakeTimeout = 2 * time.Second
	return &podSim{cfg: cfg, mac: hw, ip: ip, neighbors: map[netip.Addr]net.HardwareAddr{}, replies: map[uint16]bool{}}
}

// run dials and serves until ctx ends; the caller owns it and stops it
// with ctx.
func (p *podSim) run(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	for ctx.Err() == nil {
		c, err := memif.Dial(ctx, p.cfg)
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		p.connects.Add(1)
		p.mu.Lock()
		p.conn = c
		p.mu.Unlock()
		p.serve(ctx, c)
		p.mu.Lock()
		p.conn = nil
		p.mu.Unlock()
		_ = c.Close()
	}
}

func (p *podSim) serve(ctx context.Context, c *memif.Conn) {
	bufs := make([][]byte, 32)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.Done():
			return
		default:
		}
		n, err := c.RxBurst(0, bufs)
		if err != nil {
			return
		}
		for _, f := range bufs[:n] {
			if out := p.handle(f); out != nil {
				_, _ = c.TxBurst(0, [][]byte{out})
			}
		}
		for i := range bufs {
			bufs[i] = bufs[i][:cap(bufs[i])]
		}
		if n == 0 {
			wctx, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
			_ = c.WaitRx(wctx, 0)
			cancel()
		}
	}
}

// handle answers one frame, returning the reply or nil.
func (p *podSim) handle(f []byte) []byte {
	if len(f) < 14 {
		return nil
	}
	switch binary.BigEndian.Uint16(f[12:14]) {
	case 0x0806:
		if len(f) < 42 {
			return nil
		}
		op := binary.BigEndian.Uint16(f[20:22])
		sha := net.HardwareAddr(append([]byte(nil), f[22:28]...))
		spa, _ := netip.AddrFromSlice(f[28:32])
		tpa, _ := netip.AddrFromSlice(f[38:42])
		p.mu.Lock()
		p.neighbors[spa] = sha
		p.mu.Unlock()
		if op == 1 && tpa == p.ip {
			return arpFrame(2, p.mac, p.ip, sha, spa)
		}
	case 0x86dd:
		return p.handle6(f)
	case 0x0800:
		if len(f) < 14+20+8 || f[23] != 1 {
			return nil
		}
		ihl := int(f[14]&0x0f) * 4
		dst, _ := netip.AddrFromSlice(f[30:34])
		icmp := f[14+ihl:]
		switch icmp[0] {
		case 8: // echo request to us: swap and answer
			if dst != p.ip {
				return nil
			}
			src, _ := netip.AddrFromSlice(f[26:30])
			return icmpFrame(0, p.mac, net.HardwareAddr(f[6:12]), p.ip, src, binary.BigEndian.Uint16(icmp[4:6]), binary.BigEndian.Uint16(icmp[6:8]))
		case 0:
			p.mu.Lock()
			p.replies[binary.BigEndian.Uint16(icmp[6:8])] = true
			p.mu.Unlock()
		}
	}
	return nil
}

func (p *podSim) send(f []byte) error {
	p.mu.Lock()
	c := p.conn
	p.mu.Unlock()
	if c == nil {
		return errors.New("memif not connected")
	}
	n, err := c.TxBurst(0, [][]byte{f})
	if err == nil && n == 0 {
		err = errors.New("tx ring full")
	}
	return err
}

// ping resolves next (the peer on L2, the gateway on L3) by ARP and sends
// echo requests to dst until one with seq is answered or ctx ends.
func (p *podSim) ping(ctx context.Context, next, dst netip.Addr, seq uint16) error {
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	for {
		p.mu.Lock()
		mac, known := p.neighbors[next]
		done := p.replies[seq]
		p.mu.Unlock()
		if done {
			return nil
		}
		if !known {
			_ = p.send(arpFrame(1, p.mac, p.ip, bcast, next))
		} else {
			_ = p.send(icmpFrame(8, p.mac, mac, p.ip, dst, 0x7e1c, seq))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func arpFrame(op uint16, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	f := make([]byte, 60)
	copy(f[0:6], tha)
	copy(f[6:12], sha)
	binary.BigEndian.PutUint16(f[12:], 0x0806)
	binary.BigEndian.PutUint16(f[14:], 1)      // ethernet
	binary.BigEndian.PutUint16(f[16:], 0x0800) // ipv4
	f[18], f[19] = 6, 4
	binary.BigEndian.PutUint16(f[20:], op)
	copy(f[22:28], sha)
	s4 := spa.As4()
	copy(f[28:32], s4[:])
	if op == 2 {
		copy(f[32:38], tha)
	}
	t4 := tpa.As4()
	copy(f[38:42], t4[:])
	return f
}

func icmpFrame(typ uint8, src, dst net.HardwareAddr, sip, dip netip.Addr, id, seq uint16) []byte {
	const payload = 32
	f := make([]byte, 14+20+8+payload)
	copy(f[0:6], dst)
	copy(f[6:12], src)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+payload))
	ip[8], ip[9] = 64, 1
	s4, d4 := sip.As4(), dip.As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(ip))
	ic := f[34:]
	ic[0] = typ
	binary.BigEndian.PutUint16(ic[4:], id)
	binary.BigEndian.PutUint16(ic[6:], seq)
	for i := 8; i < len(ic); i++ {
		ic[i] = byte(i)
	}
	binary.BigEndian.PutUint16(ic[2:], checksum(ic))
	return f
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
