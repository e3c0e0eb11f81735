// Command telcni-memif is a memif endpoint for tests and demos:
//
//	telcni-memif gen     [flags]  packet generator (rate, size, count, flows)
//	telcni-memif sink    [flags]  receives and counts
//	telcni-memif respond [flags]  answers ARP and ICMP echo for -ip
//	telcni-memif ping    [flags]  pings -dst from -ip, as ping(8)
//
// It connects as a client (-role client, the default, e.g. to VPP's memif
// server) or serves as a server (-role server). Counters are printed every
// -interval and, when it ends, as one final line:
//
//	telcni-memif: rx_packets=N rx_bytes=N rx_drops=N tx_packets=N tx_bytes=N
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/telcni/telcni/memif"
)

type options struct {
	cfg      memif.Config
	role     string
	duration time.Duration
	interval time.Duration
	// gen
	rate    float64
	size    int
	count   uint64
	flows   int
	srcMAC  [6]byte
	dstMAC  [6]byte
	srcIP   netip.Addr
	dstIP   netip.Addr
	dstPort uint
	// respond, ping
	addr netip.Addr
	mac  [6]byte
	// ping (dstIP is the target)
	via netip.Addr
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "telcni-memif:", err)
		os.Exit(1)
	}
}

func usage() error {
	return errors.New("usage: telcni-memif gen|sink|respond|ping [flags] (-h for flags)")
}

func run(args []string) error {
	if len(args) < 1 {
		return usage()
	}
	mode := args[0]
	if mode != "gen" && mode != "sink" && mode != "respond" && mode != "ping" {
		return usage()
	}
	o, err := parseFlags(mode, args[1:])
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	return serve(ctx, mode, o)
}

func parseFlags(mode string, args []string) (*options, error) {
	fs := flag.NewFlagSet("telcni-memif "+mode, flag.ContinueOnError)
	o := &options{}
	var modeStr, srcMAC, dstMAC, mac, srcIP, dstIP, ip string
	var id uint
	var log2 uint
	var bufSize uint
	fs.StringVar(&o.cfg.Socket, "socket", "/run/vpp/memif.sock", "control socket path, or abstract:NAME")
	fs.StringVar(&o.cfg.Netns, "netns", "", "network namespace file to open the socket in")
	fs.StringVar(&o.role, "role", "client", "client or server")
	fs.UintVar(&id, "id", 0, "memif interface id")
	fs.StringVar(&modeStr, "mode", "ethernet", "ethernet or ip")
	fs.StringVar(&o.cfg.Secret, "secret", "", "shared secret")
	fs.StringVar(&o.cfg.Name, "name", "telcni-memif", "interface name sent to the peer")
	fs.UintVar(&log2, "ring-log2", 10, "log2 of ring slots (client)")
	fs.UintVar(&bufSize, "buffer-size", 2048, "buffer size (client)")
	fs.IntVar(&o.cfg.MTU, "mtu", 9216, "largest frame")
	fs.BoolVar(&o.cfg.Interrupt, "interrupt", false, "sleep on the peer's eventfd instead of polling (sink, respond)")
	fs.DurationVar(&o.duration, "duration", 0, "stop after this long (0: until signalled)")
	fs.DurationVar(&o.interval, "interval", 0, "print counters this often (0: only at the end)")
	if mode == "gen" {
		fs.Float64Var(&o.rate, "rate", 0, "packets per second (0: as fast as possible)")
		fs.IntVar(&o.size, "size", 64, "frame size in bytes (packet size in ip mode)")
		fs.Uint64Var(&o.count, "count", 0, "stop after this many packets (0: no limit)")
		fs.IntVar(&o.flows, "flows", 1, "number of flows (distinct UDP source ports)")
		fs.StringVar(&srcMAC, "src-mac", "02:00:00:00:00:01", "source MAC")
		fs.StringVar(&dstMAC, "dst-mac", "02:00:00:00:00:02", "destination MAC")
		fs.StringVar(&srcIP, "src-ip", "10.0.0.1", "source IPv4 address")
		fs.StringVar(&dstIP, "dst-ip", "10.0.0.2", "destination IPv4 address")
		fs.UintVar(&o.dstPort, "dst-port", 9, "UDP destination port")
	}
	var via string
	if mode == "respond" || mode == "ping" {
		fs.StringVar(&ip, "ip", "", "our IPv4 address, answered for (required)")
		fs.StringVar(&mac, "mac", "02:fe:00:00:00:01", "our MAC address")
	}
	if mode == "ping" {
		fs.StringVar(&dstIP, "dst", "", "IPv4 address to ping (required)")
		fs.StringVar(&via, "via", "", "next hop resolved with ARP (ethernet mode; default: -dst)")
		fs.Uint64Var(&o.count, "count", 3, "echo requests to send")
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	o.cfg.ID = uint32(id)
	o.cfg.Log2RingSize = uint8(log2)
	o.cfg.BufferSize = uint32(bufSize)
	switch modeStr {
	case "ethernet":
		o.cfg.Mode = memif.Ethernet
	case "ip":
		o.cfg.Mode = memif.IP
	default:
		return nil, fmt.Errorf("-mode %q: want ethernet or ip", modeStr)
	}
	if o.role != "client" && o.role != "server" {
		return nil, fmt.Errorf("-role %q: want client or server", o.role)
	}
	var err error
	parseMAC := func(s string, dst *[6]byte) {
		if err != nil {
			return
		}
		var hw net.HardwareAddr
		hw, err = net.ParseMAC(s)
		if err == nil && len(hw) != 6 {
			err = fmt.Errorf("MAC %q is not 6 bytes", s)
		}
		copy(dst[:], hw)
	}
	parseIP := func(s string, dst *netip.Addr) {
		if err != nil {
			return
		}
		var a netip.Addr
		if p, perr := netip.ParsePrefix(s); perr == nil {
			a = p.Addr()
		} else {
			a, err = netip.ParseAddr(s)
		}
		if err == nil && !a.Is4() {
			err = fmt.Errorf("%q is not an IPv4 address", s)
		}
		*dst = a
	}
	switch mode {
	case "gen":
		parseMAC(srcMAC, &o.srcMAC)
		parseMAC(dstMAC, &o.dstMAC)
		parseIP(srcIP, &o.srcIP)
		parseIP(dstIP, &o.dstIP)
		min := 28
		if o.cfg.Mode == memif.Ethernet {
			min += 14
		}
		if err == nil && (o.size < min || o.size > o.cfg.MTU) {
			err = fmt.Errorf("-size %d out of range %d..%d", o.size, min, o.cfg.MTU)
		}
		if err == nil && (o.flows < 1 || o.flows > 65535-1024) {
			err = fmt.Errorf("-flows %d out of range", o.flows)
		}
	case "respond":
		if ip == "" {
			return nil, errors.New("respond needs -ip")
		}
		parseMAC(mac, &o.mac)
		parseIP(ip, &o.addr)
	case "ping":
		if ip == "" || dstIP == "" {
			return nil, errors.New("ping needs -ip (ours) and -dst")
		}
		if via == "" {
			via = dstIP
		}
		parseMAC(mac, &o.mac)
		parseIP(ip, &o.addr)
		parseIP(dstIP, &o.dstIP)
		parseIP(via, &o.via)
		if err == nil && (o.count < 1 || o.count > 65535) {
			err = fmt.Errorf("-count %d out of range 1..65535", o.count)
		}
	}
	if err != nil {
		return nil, err
	}
	return o, nil
}

// serve keeps the interface connected until ctx ends: a client redials and
// a server accepts again after the peer goes away.
func serve(ctx context.Context, mode string, o *options) error {
	var l *memif.Listener
	if o.role == "server" {
		var err error
		if l, err = memif.Listen(o.cfg); err != nil {
			return err
		}
		defer l.Close()
	}
	var total counters
	defer func() { fmt.Println("telcni-memif: " + total.String()) }()
	for ctx.Err() == nil {
		var c *memif.Conn
		var err error
		if l != nil {
			c, err = l.Accept(ctx)
		} else {
			c, err = memif.Dial(ctx, o.cfg)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			slog.Warn("memif connect failed, retrying", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
			continue
		}
		done, err := session(ctx, mode, o, c, &total)
		c.Close()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
	return nil
}

type counters struct {
	rxPackets, rxBytes, rxDrops, txPackets, txBytes uint64
}

func (k counters) String() string {
	return fmt.Sprintf("rx_packets=%d rx_bytes=%d rx_drops=%d tx_packets=%d tx_bytes=%d",
		k.rxPackets, k.rxBytes, k.rxDrops, k.txPackets, k.txBytes)
}

// session runs one connection; done reports that the work is finished
// (gen reached -count) rather than the peer having gone.
func session(ctx context.Context, mode string, o *options, c *memif.Conn, total *counters) (done bool, err error) {
	base := *total
	update := func() {
		rx, tx := c.Stats()
		k := base
		for _, s := range rx {
			k.rxPackets += s.Packets
			k.rxBytes += s.Bytes
			k.rxDrops += s.Drops
		}
		for _, s := range tx {
			k.txPackets += s.Packets
			k.txBytes += s.Bytes
		}
		*total = k
	}
	defer update()
	var tick <-chan time.Time
	if o.interval > 0 {
		t := time.NewTicker(o.interval)
		defer t.Stop()
		tick = t.C
	}
	report := func() {
		update()
		fmt.Println("telcni-memif: " + total.String())
	}
	switch mode {
	case "gen":
		return generate(ctx, o, c, base.txPackets, tick, report)
	case "ping":
		return ping(ctx, o, c)
	default:
		return false, receive(ctx, mode, o, c, tick, report)
	}
}
