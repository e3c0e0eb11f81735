package kernelguest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netns"
)

// UDPEcho proves two-way traffic: it listens on server inside serverNS, sends a
// datagram to it from clientNS, and waits up to timeout for the server's echo.
// A nil error means the datagram went there and back.
func UDPEcho(clientNS, serverNS netns.NsHandle, server netip.AddrPort, timeout time.Duration) error {
	var srv *net.UDPConn
	if err := Do(serverNS, func() error {
		var err error
		srv, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(server))
		return err
	}); err != nil {
		return fmt.Errorf("listen on %s: %w", server, err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer srv.Close() // stops the echo goroutine
	wg.Add(1)
	go func() { // owned by UDPEcho: ends when srv is closed
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			n, from, err := srv.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = srv.WriteToUDPAddrPort(buf[:n], from)
		}
	}()

	var cli *net.UDPConn
	if err := Do(clientNS, func() error {
		var err error
		cli, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(server))
		return err
	}); err != nil {
		return fmt.Errorf("dial %s: %w", server, err)
	}
	defer cli.Close()
	msg := []byte(fmt.Sprintf("telcni probe %d", time.Now().UnixNano()))
	deadline := time.Now().Add(timeout)
	if err := cli.SetDeadline(deadline); err != nil {
		return fmt.Errorf("set deadline: %w", err)
	}
	buf := make([]byte, 1500)
	// Resend now and then: the first datagram may be lost while ARP resolves.
	for {
		if _, err := cli.Write(msg); err != nil {
			return fmt.Errorf("send to %s: %w", server, err)
		}
		if err := cli.SetReadDeadline(minTime(deadline, time.Now().Add(200*time.Millisecond))); err != nil {
			return fmt.Errorf("set deadline: %w", err)
		}
		n, err := cli.Read(buf)
		if err == nil && bytes.Equal(buf[:n], msg) {
			return nil
		}
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			return fmt.Errorf("receive from %s: %w", server, err)
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("no echo from %s within %s", server, timeout)
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
