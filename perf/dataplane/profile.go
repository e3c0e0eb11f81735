package dataplane

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/telcni/telcni/perf/trex"
)

// Profile is a traffic mix: frames of Sizes sent in the proportions
// Weights (one size for the classic RFC 2544 sizes, three for IMIX).
type Profile struct {
	Name    string
	Sizes   []int // bytes on the wire, FCS included
	Weights []int
}

// IMIX is the simple IMIX (7:4:1 of 64, 570 and 1518 bytes).
var IMIX = Profile{Name: "IMIX", Sizes: []int{64, 570, 1518}, Weights: []int{7, 4, 1}}

// FixedSize is a profile of one frame size.
func FixedSize(n int) Profile {
	return Profile{Name: strconv.Itoa(n), Sizes: []int{n}, Weights: []int{1}}
}

// ParseProfile takes "64", "1518" or "IMIX".
func ParseProfile(s string) (Profile, error) {
	if s == "IMIX" || s == "imix" {
		return IMIX, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 64 || n > 1518 {
		return Profile{}, fmt.Errorf("frame size %q: want 64-1518 or IMIX", s)
	}
	return FixedSize(n), nil
}

// MeanSize is the average frame size on the wire.
func (p Profile) MeanSize() float64 {
	var sum, w float64
	for i, s := range p.Sizes {
		sum += float64(s * p.Weights[i])
		w += float64(p.Weights[i])
	}
	return sum / w
}

// L1Bits is the line-rate cost of one average frame in bits (frame plus
// preamble and inter-frame gap, 20 bytes), to turn pps into Gbps.
func (p Profile) L1Bits() float64 { return (p.MeanSize() + 20) * 8 }

// pattern is the order frames are sent in: weights spread round-robin.
func (p Profile) pattern() []int {
	var out []int
	left := append([]int(nil), p.Weights...)
	for more := true; more; {
		more = false
		for i := range left {
			if left[i] > 0 {
				out = append(out, p.Sizes[i])
				left[i]--
				more = true
			}
		}
	}
	return out
}

// Addressing is what a scenario forwards from port 0 to port 1.
type Addressing struct {
	SrcMAC, DstMAC net.HardwareAddr // of the frames port 0 sends
	SrcIP, DstIP   netip.Addr
	// Reverse, when set, are the MACs of a frame from port 1 to port 0,
	// sent before the search so that a learning bridge knows port 1.
	RevSrcMAC, RevDstMAC net.HardwareAddr
}

// frame builds one UDP frame of size on the wire.
func (a Addressing) frame(size int) []byte {
	return trex.UDPFrame(trex.UDPFrameSpec{Size: size, SrcMAC: a.SrcMAC, DstMAC: a.DstMAC, SrcIP: a.SrcIP, DstIP: a.DstIP})
}

func (a Addressing) reverse() []byte {
	if a.RevSrcMAC == nil {
		return nil
	}
	return trex.UDPFrame(trex.UDPFrameSpec{Size: 64, SrcMAC: a.RevSrcMAC, DstMAC: a.RevDstMAC, SrcIP: a.DstIP, DstIP: a.SrcIP})
}

// The Go generator marks its frames after the UDP header: a magic, the
// trial number and the send time, so that the receiver counts only this
// trial's frames and measures latency.
const (
	stampOff   = 14 + 20 + 8
	stampMagic = 0x74636e70 // "tcnp"
	stampLen   = 16
)

func stamp(b []byte, trial uint32, ns int64) {
	binary.BigEndian.PutUint32(b[stampOff:], stampMagic)
	binary.BigEndian.PutUint32(b[stampOff+4:], trial)
	binary.BigEndian.PutUint64(b[stampOff+8:], uint64(ns))
}

func readStamp(b []byte) (trial uint32, ns int64, ok bool) {
	if len(b) < stampOff+stampLen || binary.BigEndian.Uint32(b[stampOff:]) != stampMagic {
		return 0, 0, false
	}
	return binary.BigEndian.Uint32(b[stampOff+4:]), int64(binary.BigEndian.Uint64(b[stampOff+8:])), true
}
