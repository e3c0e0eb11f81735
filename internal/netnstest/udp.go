package netnstest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// UDPEcho proves reachability with real packets: it listens on to (in the
// netns toNS), sends a datagram from the netns fromNS, and waits for the
// echo. It returns the source address the receiver saw.
func UDPEcho(ctx context.Context, fromNS, toNS string, to netip.Addr) (netip.Addr, error) {
	return UDPEchoFrom(ctx, fromNS, netip.Addr{}, toNS, to)
}

// UDPEchoFrom is UDPEcho with the sender bound to from (zero: any).
func UDPEchoFrom(ctx context.Context, fromNS string, from netip.Addr, toNS string, to netip.Addr) (netip.Addr, error) {
	return udpEcho(ctx, fromNS, from, toNS, netip.AddrPortFrom(to, 0))
}

// UDPEchoPort is UDPEcho to a given port (firewall tests).
func UDPEchoPort(ctx context.Context, fromNS, toNS string, to netip.AddrPort) (netip.Addr, error) {
	return udpEcho(ctx, fromNS, netip.Addr{}, toNS, to)
}

func udpEcho(ctx context.Context, fromNS string, from netip.Addr, toNS string, toAP netip.AddrPort) (netip.Addr, error) {
	to := toAP.Addr()
	var conn *net.UDPConn
	err := Do(toNS, func() error {
		var err error
		conn, err = net.ListenUDP("udp", &net.UDPAddr{IP: to.AsSlice(), Port: int(toAP.Port())})
		return err
	})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("listen on %s: %w", to, err)
	}
	defer conn.Close()
	port := conn.LocalAddr().(*net.UDPAddr).Port
	seen := make(chan netip.Addr, 1)
	go func() { // owned: ends when conn is closed by the deferred Close
		buf := make([]byte, 64)
		for {
			n, src, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = conn.WriteToUDPAddrPort(buf[:n], src)
			select {
			case seen <- src.Addr().Unmap():
			default:
			}
		}
	}()
	var client *net.UDPConn
	err = Do(fromNS, func() error {
		var err error
		var laddr *net.UDPAddr
		if from.IsValid() {
			laddr = &net.UDPAddr{IP: from.AsSlice()}
		}
		client, err = net.DialUDP("udp", laddr, &net.UDPAddr{IP: to.AsSlice(), Port: port})
		return err
	})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("dial %s: %w", to, err)
	}
	defer client.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(5 * time.Second)
	}
	buf := make([]byte, 64)
	// Retry: the first datagram may be spent on neighbour resolution.
	for time.Now().Before(deadline) {
		if _, err := client.Write([]byte("telcni")); err != nil {
			return netip.Addr{}, fmt.Errorf("send to %s: %w", to, err)
		}
		_ = client.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, err := client.Read(buf); err == nil && string(buf[:n]) == "telcni" {
			return <-seen, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("no echo from %s", to)
}
