package dataplane

import (
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/telcni/telcni/internal/netnstest"
)

// kernelScenarios are the kernel data paths, measured with the Go generator
// over AF_PACKET in two throwaway network namespaces.
var kernelScenarios = map[string]func(t testing.TB) *DUT{
	"kernel-veth":    vethDUT,
	"kernel-macvlan": macvlanDUT,
}

// vethDUT: pod A and pod B joined by a veth pair (the baseline).
func vethDUT(t testing.TB) *DUT {
	a, b := netnstest.New(t), netnstest.New(t)
	netnstest.Wire(t, a, b, "pv0")
	return kernelDUT(t, "kernel-veth", "a veth pair between two netns (the kernel baseline)", a, "pv0", b, "pv0p")
}

// macvlanDUT: pod A and pod B each with a macvlan (bridge mode, as telcni's
// kernel path makes them) on one parent in a node namespace.
func macvlanDUT(t testing.TB) *DUT {
	node, wire, a, b := netnstest.New(t), netnstest.New(t), netnstest.New(t), netnstest.New(t)
	netnstest.Wire(t, node, wire, "up0")
	h := netnstest.Handle(t, node)
	parent, err := h.LinkByName("up0")
	if err != nil {
		t.Fatal(err)
	}
	for name, ns := range map[string]string{"mva": a, "mvb": b} {
		target, err := netns.GetFromPath(ns)
		if err != nil {
			t.Fatal(err)
		}
		err = h.LinkAdd(&netlink.Macvlan{LinkAttrs: netlink.LinkAttrs{Name: name, ParentIndex: parent.Attrs().Index, Namespace: netlink.NsFd(int(target))}, Mode: netlink.MACVLAN_MODE_BRIDGE})
		target.Close()
		if err != nil {
			t.Fatalf("macvlan %s: %v", name, err)
		}
		hp := netnstest.Handle(t, ns)
		l, err := hp.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := hp.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	return kernelDUT(t, "kernel-macvlan", "two macvlan interfaces (bridge mode) on one parent, each in its pod's netns", a, "mva", b, "mvb")
}

func kernelDUT(t testing.TB, name, how, nsA, ifA, nsB, ifB string) *DUT {
	macOf := func(ns, ifName string) net.HardwareAddr {
		l, err := netnstest.Handle(t, ns).LinkByName(ifName)
		if err != nil {
			t.Fatal(err)
		}
		return l.Attrs().HardwareAddr
	}
	d := &DUT{Name: name, How: how}
	d.Addr = Addressing{SrcMAC: macOf(nsA, ifA), DstMAC: macOf(nsB, ifB)}
	d.Addr.SrcIP, d.Addr.DstIP = ipA, ipB
	d.Ports = func() (port, port, error) {
		tx, err := openPacket(nsA, ifA)
		if err != nil {
			return nil, nil, err
		}
		rx, err := openPacket(nsB, ifB)
		if err != nil {
			tx.close()
			return nil, nil, err
		}
		return tx, rx, nil
	}
	return d
}

// packetPort is an AF_PACKET socket bound to one interface.
type packetPort struct{ fd int }

func openPacket(ns, ifName string) (*packetPort, error) {
	var p *packetPort
	err := netnstest.Do(ns, func() error {
		ifi, err := net.InterfaceByName(ifName)
		if err != nil {
			return err
		}
		proto := int(htons(unix.ETH_P_ALL))
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return fmt.Errorf("AF_PACKET socket: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind AF_PACKET to %s: %w", ifName, err)
		}
		// Room for a trial's burst while the receiver is descheduled.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20)
		_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
		p = &packetPort{fd: fd}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("netns %s: %w", ns, err)
	}
	return p, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (p *packetPort) send(frames [][]byte) (int, error) {
	for i, f := range frames {
		if _, err := unix.Write(p.fd, f); err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.ENOBUFS) {
				return i, nil // queue full: the rest is lost
			}
			return i, err
		}
	}
	return len(frames), nil
}

func (p *packetPort) recv(bufs [][]byte) (int, error) {
	for i := range bufs {
		n, _, err := unix.Recvfrom(p.fd, bufs[i][:cap(bufs[i])], unix.MSG_DONTWAIT)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) {
				return i, nil
			}
			return i, err
		}
		bufs[i] = bufs[i][:n]
	}
	return len(bufs), nil
}

func (p *packetPort) close() error { return unix.Close(p.fd) }
