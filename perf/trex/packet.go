package trex

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// UDPFrameSpec describes an Ethernet/IPv4/UDP frame. Zero fields take the
// defaults noted.
type UDPFrameSpec struct {
	// Size is the frame size on the wire including the 4-byte FCS, as in
	// "64-byte frames" (default 64). The bytes built are Size-4 long.
	Size             int
	SrcMAC, DstMAC   net.HardwareAddr // default 02:00:00:00:00:01 -> 02:00:00:00:00:02
	SrcIP, DstIP     netip.Addr       // default 16.0.0.1 -> 48.0.0.1
	SrcPort, DstPort uint16           // default 1025 -> 12
	TTL              uint8            // default 64
}

// UDPFrame builds the frame's bytes (without FCS), with a valid IPv4 header
// checksum and a zero (absent) UDP checksum. The payload is zero-filled.
func UDPFrame(s UDPFrameSpec) []byte {
	if s.Size == 0 {
		s.Size = 64
	}
	if s.SrcMAC == nil {
		s.SrcMAC = net.HardwareAddr{2, 0, 0, 0, 0, 1}
	}
	if s.DstMAC == nil {
		s.DstMAC = net.HardwareAddr{2, 0, 0, 0, 0, 2}
	}
	if !s.SrcIP.IsValid() {
		s.SrcIP = netip.AddrFrom4([4]byte{16, 0, 0, 1})
	}
	if !s.DstIP.IsValid() {
		s.DstIP = netip.AddrFrom4([4]byte{48, 0, 0, 1})
	}
	if s.SrcPort == 0 {
		s.SrcPort = 1025
	}
	if s.DstPort == 0 {
		s.DstPort = 12
	}
	if s.TTL == 0 {
		s.TTL = 64
	}
	const hdr = 14 + 20 + 8
	n := max(s.Size-4, hdr)
	b := make([]byte, n)
	copy(b[0:6], s.DstMAC)
	copy(b[6:12], s.SrcMAC)
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(n-14))
	ip[8] = s.TTL
	ip[9] = 17
	src, dst := s.SrcIP.As4(), s.DstIP.As4()
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip))
	udp := b[34:42]
	binary.BigEndian.PutUint16(udp[0:], s.SrcPort)
	binary.BigEndian.PutUint16(udp[2:], s.DstPort)
	binary.BigEndian.PutUint16(udp[4:], uint16(n-34))
	return b
}

func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
