package vppagent

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"time"
)

// IPv6 side of podSim: answers neighbour solicitations for its address and
// ICMPv6 echo, learns neighbours from advertisements, and pings.

func (p *podSim) handle6(f []byte) []byte {
	if len(f) < 14+40+8 || f[14+6] != 58 { // next header ICMPv6
		return nil
	}
	src, _ := netip.AddrFromSlice(f[22:38])
	dst, _ := netip.AddrFromSlice(f[38:54])
	icmp := f[54:]
	switch icmp[0] {
	case 135: // neighbour solicitation
		target, _ := netip.AddrFromSlice(icmp[8:24])
		if target != p.ip6 {
			return nil
		}
		p.learn(src, net.HardwareAddr(f[6:12]))
		to := src
		if !to.IsValid() || to.IsUnspecified() {
			to = netip.MustParseAddr("ff02::1")
		}
		na := make([]byte, 32)
		na[0] = 136
		na[4] = 0x60 // solicited, override
		t16 := target.As16()
		copy(na[8:24], t16[:])
		na[24], na[25] = 2, 1 // target link-layer address option
		copy(na[26:32], p.mac)
		return ip6Frame(p.mac, net.HardwareAddr(f[6:12]), p.ip6, to, 255, na)
	case 136: // neighbour advertisement
		target, _ := netip.AddrFromSlice(icmp[8:24])
		mac := net.HardwareAddr(f[6:12])
		if len(icmp) >= 32 && icmp[24] == 2 {
			mac = net.HardwareAddr(icmp[26:32])
		}
		p.learn(target, mac)
	case 128: // echo request
		if dst != p.ip6 {
			return nil
		}
		rep := append([]byte(nil), icmp...)
		rep[0] = 129
		return ip6Frame(p.mac, net.HardwareAddr(f[6:12]), p.ip6, src, 64, rep)
	case 129:
		p.mu.Lock()
		p.replies[binary.BigEndian.Uint16(icmp[6:8])] = true
		p.mu.Unlock()
	}
	return nil
}

func (p *podSim) learn(a netip.Addr, mac net.HardwareAddr) {
	p.mu.Lock()
	p.neighbors[a] = append(net.HardwareAddr(nil), mac...)
	p.mu.Unlock()
}

// ping6 resolves next by neighbour discovery and pings dst until seq is
// answered or ctx ends.
func (p *podSim) ping6(ctx context.Context, next, dst netip.Addr, seq uint16) error {
	for {
		p.mu.Lock()
		mac, known := p.neighbors[next]
		done := p.replies[seq]
		p.mu.Unlock()
		if done {
			return nil
		}
		if !known {
			n16 := next.As16()
			sol := netip.AddrFrom16([16]byte{0xff, 0x02, 11: 1, 12: 0xff, 13: n16[13], 14: n16[14], 15: n16[15]})
			ns := make([]byte, 32)
			ns[0] = 135
			copy(ns[8:24], n16[:])
			ns[24], ns[25] = 1, 1 // source link-layer address option
			copy(ns[26:32], p.mac)
			m := net.HardwareAddr{0x33, 0x33, 0xff, n16[13], n16[14], n16[15]}
			_ = p.send(ip6Frame(p.mac, m, p.ip6, sol, 255, ns))
		} else {
			echo := make([]byte, 8+32)
			echo[0] = 128
			binary.BigEndian.PutUint16(echo[4:], 0x7e1c)
			binary.BigEndian.PutUint16(echo[6:], seq)
			_ = p.send(ip6Frame(p.mac, mac, p.ip6, dst, 64, echo))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ip6Frame wraps an ICMPv6 message (checksum computed here).
func ip6Frame(src, dst net.HardwareAddr, sip, dip netip.Addr, hop uint8, icmp []byte) []byte {
	f := make([]byte, 14+40+len(icmp))
	copy(f[0:6], dst)
	copy(f[6:12], src)
	binary.BigEndian.PutUint16(f[12:], 0x86dd)
	ip := f[14:54]
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(icmp)))
	ip[6], ip[7] = 58, hop
	s16, d16 := sip.As16(), dip.As16()
	copy(ip[8:24], s16[:])
	copy(ip[24:40], d16[:])
	body := f[54:]
	copy(body, icmp)
	body[2], body[3] = 0, 0
	pseudo := make([]byte, 0, 40+len(body))
	pseudo = append(pseudo, s16[:]...)
	pseudo = append(pseudo, d16[:]...)
	pseudo = binary.BigEndian.AppendUint32(pseudo, uint32(len(body)))
	pseudo = append(pseudo, 0, 0, 0, 58)
	pseudo = append(pseudo, body...)
	binary.BigEndian.PutUint16(body[2:], checksum(pseudo))
	return f
}
