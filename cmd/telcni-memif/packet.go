package main

import (
	"encoding/binary"
	"net/netip"
)

// Minimal Ethernet/ARP/IPv4/ICMP/UDP handling for the generator and the
// responder: just what a pod-side test endpoint needs.

const (
	ethHdr       = 14
	etherTypeIP  = 0x0800
	etherTypeARP = 0x0806
	protoICMP    = 1
	protoUDP     = 17
)

func checksum(b []byte) uint16 {
	var s uint32
	for len(b) >= 2 {
		s += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// buildUDP writes an IPv4/UDP packet of total length size (at least 28
// bytes) into b (len(b) >= size) and returns it. The UDP checksum is left
// zero (allowed in IPv4) so that the generator can vary ports in place.
func buildUDP(b []byte, size int, src, dst netip.Addr, sport, dport uint16) []byte {
	p := ipv4(b, size, protoUDP, src, dst)
	binary.BigEndian.PutUint16(p[20:], sport)
	binary.BigEndian.PutUint16(p[22:], dport)
	binary.BigEndian.PutUint16(p[24:], uint16(size-20))
	return p
}

// ipv4 clears b[:total] and writes an IPv4 header (no options, TTL 64,
// checksum set) for a packet of total bytes carrying proto.
func ipv4(b []byte, total int, proto byte, src, dst netip.Addr) []byte {
	p := b[:total]
	clear(p)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(total))
	p[8] = 64
	p[9] = proto
	s4, d4 := src.As4(), dst.As4()
	copy(p[12:16], s4[:])
	copy(p[16:20], d4[:])
	binary.BigEndian.PutUint16(p[10:], checksum(p[:20]))
	return p
}

// buildFrame writes a frame of exactly size bytes: Ethernet+IPv4+UDP in
// ethernet mode, IPv4+UDP in ip mode.
func buildFrame(b []byte, size int, ip bool, srcMAC, dstMAC [6]byte, src, dst netip.Addr, sport, dport uint16) []byte {
	if ip {
		return buildUDP(b, size, src, dst, sport, dport)
	}
	copy(b[0:6], dstMAC[:])
	copy(b[6:12], srcMAC[:])
	binary.BigEndian.PutUint16(b[12:], etherTypeIP)
	buildUDP(b[ethHdr:], size-ethHdr, src, dst, sport, dport)
	return b[:size]
}

// udpSportOffset is where the UDP source port sits in a generated frame.
func udpSportOffset(ip bool) int {
	if ip {
		return 20
	}
	return ethHdr + 20
}

// respond computes the reply to one received frame, written into out, or
// returns nil if the frame needs none: ARP requests for our address and
// ICMP echo requests to it. In ip mode frames are bare IPv4 packets.
func respond(in, out []byte, ipMode bool, mac [6]byte, addr netip.Addr) []byte {
	if ipMode {
		return icmpReply(in, out, addr)
	}
	if len(in) < ethHdr {
		return nil
	}
	switch binary.BigEndian.Uint16(in[12:]) {
	case etherTypeARP:
		return arpReply(in, out, mac, addr)
	case etherTypeIP:
		if len(out) < ethHdr {
			return nil
		}
		r := icmpReply(in[ethHdr:], out[ethHdr:], addr)
		if r == nil {
			return nil
		}
		copy(out[0:6], in[6:12])
		copy(out[6:12], mac[:])
		binary.BigEndian.PutUint16(out[12:], etherTypeIP)
		return out[:ethHdr+len(r)]
	}
	return nil
}

func arpReply(in, out []byte, mac [6]byte, addr netip.Addr) []byte {
	a := in[ethHdr:]
	if len(a) < 28 || len(out) < ethHdr+28 {
		return nil
	}
	// Ethernet/IPv4 request (htype 1, ptype 0x0800, hlen 6, plen 4, op 1).
	if binary.BigEndian.Uint16(a[0:]) != 1 || binary.BigEndian.Uint16(a[2:]) != etherTypeIP ||
		a[4] != 6 || a[5] != 4 || binary.BigEndian.Uint16(a[6:]) != 1 {
		return nil
	}
	want := addr.As4()
	if [4]byte(a[24:28]) != want {
		return nil
	}
	o := out[:ethHdr+28]
	copy(o[0:6], a[8:14])
	copy(o[6:12], mac[:])
	binary.BigEndian.PutUint16(o[12:], etherTypeARP)
	r := o[ethHdr:]
	copy(r[0:6], a[0:6])
	binary.BigEndian.PutUint16(r[6:], 2)
	copy(r[8:14], mac[:])
	copy(r[14:18], want[:])
	copy(r[18:24], a[8:14])
	copy(r[24:28], a[14:18])
	return o
}

func icmpReply(p, out []byte, addr netip.Addr) []byte {
	if len(p) < 20 || p[0]>>4 != 4 {
		return nil
	}
	ihl := int(p[0]&0xf) * 4
	total := int(binary.BigEndian.Uint16(p[2:]))
	if ihl < 20 || total < ihl+8 || total > len(p) || len(out) < total || p[9] != protoICMP {
		return nil
	}
	if [4]byte(p[16:20]) != addr.As4() || checksum(p[:ihl]) != 0 {
		return nil
	}
	icmp := p[ihl:total]
	if icmp[0] != 8 || checksum(icmp) != 0 { // echo request, intact
		return nil
	}
	o := out[:total]
	copy(o, p[:total])
	copy(o[12:16], p[16:20])
	copy(o[16:20], p[12:16])
	o[8] = 64
	o[10], o[11] = 0, 0
	binary.BigEndian.PutUint16(o[10:], checksum(o[:ihl]))
	ic := o[ihl:]
	ic[0] = 0
	ic[2], ic[3] = 0, 0
	binary.BigEndian.PutUint16(ic[2:], checksum(ic))
	return o
}
