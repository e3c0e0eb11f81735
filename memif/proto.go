package memif

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Wire constants of the memif protocol, version 2.0, as VPP, libmemif and
// DPDK's net_memif define it. All multi-byte fields are in host byte order
// (memif is a same-host protocol); telcni supports little-endian hosts only.
const (
	ringCookie  = 0x3E31F20 // written by the client at the start of every ring
	protoMajor  = 2
	protoMinor  = 0
	protoVer    = protoMajor<<8 | protoMinor
	msgSize     = 128 // every control message is exactly this long
	nameLen     = 32
	secretLen   = 24
	reasonLen   = 96
	maxLog2Ring = 14 // largest ring we accept or offer: 16384 slots

	descFlagNext = 1 << 0 // descriptor continues in the next slot
	ringFlagMask = 1 << 0 // receiver asks the producer not to signal the eventfd
	addRingS2M   = 1 << 0 // ADD_RING flag: ring carries client-to-server traffic
)

type msgType uint16

const (
	msgNone msgType = iota
	msgAck
	msgHello
	msgInit
	msgAddRegion
	msgAddRing
	msgConnect
	msgConnected
	msgDisconnect
)

func (t msgType) String() string {
	names := [...]string{"NONE", "ACK", "HELLO", "INIT", "ADD_REGION", "ADD_RING", "CONNECT", "CONNECTED", "DISCONNECT"}
	if int(t) < len(names) {
		return names[t]
	}
	return fmt.Sprintf("type(%d)", uint16(t))
}

// msg is the decoded form of any control message; only the fields of its
// type are meaningful. Offsets in encode/decode follow memif.h's packed
// layout: a 16-bit type, then the union starting at byte 2.
type msg struct {
	typ msgType

	// HELLO
	name        string
	minVer      uint16
	maxVer      uint16
	maxRegion   uint16
	maxM2S      uint16
	maxS2M      uint16
	maxLog2Ring uint8
	// INIT (also uses name)
	version uint16
	id      uint32
	mode    Mode
	secret  string
	// ADD_REGION
	regionIndex uint16
	regionSize  uint64
	// ADD_RING
	ringFlags   uint16
	ringIndex   uint16
	ringRegion  uint16
	ringOffset  uint32
	log2Ring    uint8
	privHdrSize uint16
	// DISCONNECT
	code   uint32
	reason string
}

var le = binary.LittleEndian

var errBadMsg = errors.New("malformed control message")

// putStr copies s into a fixed NUL-padded field, truncating if needed.
func putStr(dst []byte, s string) {
	n := copy(dst, s)
	clear(dst[n:])
}

// getStr reads a fixed-length NUL-padded field. Bytes after the first NUL
// are ignored; non-printable bytes are replaced so that a hostile peer's
// name cannot inject control characters into our logs.
func getStr(src []byte) string {
	if i := bytes.IndexByte(src, 0); i >= 0 {
		src = src[:i]
	}
	out := []byte(nil)
	for i, c := range src {
		if c < 0x20 || c > 0x7e {
			if out == nil {
				out = append([]byte{}, src...)
			}
			out[i] = '?'
		}
	}
	if out != nil {
		return string(out)
	}
	return string(src)
}

func (m *msg) encode(b *[msgSize]byte) {
	clear(b[:])
	le.PutUint16(b[0:], uint16(m.typ))
	p := b[2:]
	switch m.typ {
	case msgHello:
		putStr(p[0:nameLen], m.name)
		le.PutUint16(p[32:], m.minVer)
		le.PutUint16(p[34:], m.maxVer)
		le.PutUint16(p[36:], m.maxRegion)
		le.PutUint16(p[38:], m.maxM2S)
		le.PutUint16(p[40:], m.maxS2M)
		p[42] = m.maxLog2Ring
	case msgInit:
		le.PutUint16(p[0:], m.version)
		le.PutUint32(p[2:], m.id)
		p[6] = uint8(m.mode)
		putStr(p[7:7+secretLen], m.secret)
		putStr(p[31:31+nameLen], m.name)
	case msgAddRegion:
		le.PutUint16(p[0:], m.regionIndex)
		le.PutUint64(p[2:], m.regionSize)
	case msgAddRing:
		le.PutUint16(p[0:], m.ringFlags)
		le.PutUint16(p[2:], m.ringIndex)
		le.PutUint16(p[4:], m.ringRegion)
		le.PutUint32(p[6:], m.ringOffset)
		p[10] = m.log2Ring
		le.PutUint16(p[11:], m.privHdrSize)
	case msgConnect, msgConnected:
		putStr(p[0:nameLen], m.name)
	case msgDisconnect:
		le.PutUint32(p[0:], m.code)
		putStr(p[4:4+reasonLen], m.reason)
	}
}

// decodeMsg parses one control message. It checks the framing and the type
// only; the handshake code checks each field against its own state.
func decodeMsg(b []byte) (msg, error) {
	var m msg
	if len(b) != msgSize {
		return m, fmt.Errorf("%w: %d bytes, want %d", errBadMsg, len(b), msgSize)
	}
	m.typ = msgType(le.Uint16(b[0:]))
	p := b[2:]
	switch m.typ {
	case msgAck:
	case msgHello:
		m.name = getStr(p[0:nameLen])
		m.minVer = le.Uint16(p[32:])
		m.maxVer = le.Uint16(p[34:])
		m.maxRegion = le.Uint16(p[36:])
		m.maxM2S = le.Uint16(p[38:])
		m.maxS2M = le.Uint16(p[40:])
		m.maxLog2Ring = p[42]
	case msgInit:
		m.version = le.Uint16(p[0:])
		m.id = le.Uint32(p[2:])
		m.mode = Mode(p[6])
		// The secret is compared as raw bytes up to the first NUL, so keep
		// it unsanitised.
		sec := p[7 : 7+secretLen]
		if i := bytes.IndexByte(sec, 0); i >= 0 {
			sec = sec[:i]
		}
		m.secret = string(sec)
		m.name = getStr(p[31 : 31+nameLen])
	case msgAddRegion:
		m.regionIndex = le.Uint16(p[0:])
		m.regionSize = le.Uint64(p[2:])
	case msgAddRing:
		m.ringFlags = le.Uint16(p[0:])
		m.ringIndex = le.Uint16(p[2:])
		m.ringRegion = le.Uint16(p[4:])
		m.ringOffset = le.Uint32(p[6:])
		m.log2Ring = p[10]
		m.privHdrSize = le.Uint16(p[11:])
	case msgConnect, msgConnected:
		m.name = getStr(p[0:nameLen])
	case msgDisconnect:
		m.code = le.Uint32(p[0:])
		m.reason = getStr(p[4 : 4+reasonLen])
	default:
		return m, fmt.Errorf("%w: unknown type %d", errBadMsg, uint16(m.typ))
	}
	return m, nil
}
