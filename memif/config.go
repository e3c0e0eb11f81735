package memif

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Mode is the memif interface mode: what a frame on the rings is.
type Mode uint8

const (
	// Ethernet frames (L2), the default.
	Ethernet Mode = 0
	// IP packets without a link-layer header (L3).
	IP Mode = 1
)

func (m Mode) String() string {
	switch m {
	case Ethernet:
		return "ethernet"
	case IP:
		return "ip"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// Config describes one memif interface. The zero value of every field but
// Socket is usable.
type Config struct {
	// Socket is the control socket: a filesystem path, or "abstract:NAME"
	// for a Linux abstract socket in the network namespace of the caller
	// (or of Netns), as VPP and Calico/VPP use.
	Socket string
	// Netns, if set, is a network namespace file (/run/netns/x,
	// /proc/PID/ns/net) in which the control socket is created. Only the
	// socket lives there; abstract socket names are per network namespace.
	Netns string
	// ID tells interfaces on one socket apart; both peers must agree.
	ID uint32
	// Mode must match the peer's.
	Mode Mode
	// Secret, if set on the server, must be presented by the client
	// (at most 24 bytes).
	Secret string
	// Name is this side's interface name, sent to the peer (at most 32 bytes).
	Name string
	// Queues is the number of queue pairs the client asks for, or the most
	// a server accepts. Default 1.
	Queues int
	// Log2RingSize is log2 of the slots per ring (client side; the server
	// takes the client's). Default 10 (1024 slots), at most 14.
	Log2RingSize uint8
	// BufferSize is the size of one packet buffer (client side). Default 2048.
	// Frames longer than a buffer are chained over several slots.
	BufferSize uint32
	// MTU is the largest frame TxBurst accepts, link-layer header included
	// in ethernet mode. Default 9216.
	MTU int
	// Interrupt makes the peer signal an eventfd after it fills our receive
	// rings, so that WaitRx can block. Without it (polling) the peer is asked
	// not to signal, which is faster.
	Interrupt bool
	// AllowUnsealed lets a server map client regions whose memfd is not
	// sealed against shrinking. An unsealed region can be truncated by the
	// peer under us, which kills this process with SIGBUS; only set it for
	// peers you trust (e.g. DPDK zero-copy on hugepages).
	AllowUnsealed bool
	// HandshakeTimeout bounds the connection handshake. Default 10s.
	HandshakeTimeout time.Duration
	// Logger receives connection events. Default slog.Default().
	Logger *slog.Logger
}

const (
	defaultLog2Ring   = 10
	defaultBufferSize = 2048
	defaultMTU        = 9216
	maxQueues         = 256
	maxRegions        = 64
)

func (c Config) withDefaults() (Config, error) {
	if c.Socket == "" {
		return c, errors.New("memif: Config.Socket is empty")
	}
	if c.Queues == 0 {
		c.Queues = 1
	}
	if c.Queues < 0 || c.Queues > maxQueues {
		return c, fmt.Errorf("memif: Queues %d out of range 1..%d", c.Queues, maxQueues)
	}
	if c.Log2RingSize == 0 {
		c.Log2RingSize = defaultLog2Ring
	}
	if c.Log2RingSize > maxLog2Ring {
		return c, fmt.Errorf("memif: Log2RingSize %d above %d", c.Log2RingSize, maxLog2Ring)
	}
	if c.BufferSize == 0 {
		c.BufferSize = defaultBufferSize
	}
	if c.BufferSize < 64 || c.BufferSize > 1<<20 {
		return c, fmt.Errorf("memif: BufferSize %d out of range 64..1048576", c.BufferSize)
	}
	if c.MTU == 0 {
		c.MTU = defaultMTU
	}
	if c.MTU < 1 || c.MTU > 1<<16 {
		return c, fmt.Errorf("memif: MTU %d out of range 1..65536", c.MTU)
	}
	if c.Mode != Ethernet && c.Mode != IP {
		return c, fmt.Errorf("memif: unsupported mode %d", c.Mode)
	}
	if len(c.Secret) > secretLen {
		return c, fmt.Errorf("memif: Secret longer than %d bytes", secretLen)
	}
	if len(c.Name) > nameLen {
		return c, fmt.Errorf("memif: Name longer than %d bytes", nameLen)
	}
	if c.Name == "" {
		c.Name = "telcni-memif"
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// sockAddr turns Config.Socket into the name Go's net package expects:
// abstract names start with '@'.
func sockAddr(s string) string {
	if name, ok := strings.CutPrefix(s, "abstract:"); ok {
		return "@" + name
	}
	return s
}
