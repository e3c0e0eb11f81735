package vppagent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/telcni/telcni/vppagent/vpptest"
)

var vethSeq atomic.Int32

// uplinkVeth makes a veth pair: one end in the host netns for VPP's
// af_packet, the other in a fresh netns standing for the node's network.
func uplinkVeth(t *testing.T) (vppSide, peerSide, peerNetns string) {
	t.Helper()
	ns := newNetns(t)
	name := ns[strings.LastIndex(ns, "/")+1:]
	n := vethSeq.Add(1)
	vppSide, peerSide = fmt.Sprintf("tvu%d-%d", os.Getpid()%10000, n), fmt.Sprintf("tvp%d-%d", os.Getpid()%10000, n)
	run(t, "ip", "link", "add", vppSide, "type", "veth", "peer", "name", peerSide)
	t.Cleanup(func() { _, _ = runOut("ip", "link", "del", vppSide) })
	run(t, "ip", "link", "set", peerSide, "netns", name)
	run(t, "ip", "link", "set", vppSide, "up")
	run(t, "ip", "-n", name, "link", "set", peerSide, "up")
	return vppSide, peerSide, ns
}

func TestVPPAFPacketUplinkPreservesSourceIP(t *testing.T) {
	uplinkPreservesSourceIP(t, UplinkAFPacket)
}

func TestVPPAFXDPUplinkPreservesSourceIP(t *testing.T) {
	uplinkPreservesSourceIP(t, UplinkAFXDP)
}

func uplinkPreservesSourceIP(t *testing.T, kind string) {
	v := vpptest.Start(t, vpptest.Options{})
	up, peer, hostNS := uplinkVeth(t)
	hn := hostNS[strings.LastIndex(hostNS, "/")+1:]
	run(t, "ip", "-n", hn, "addr", "add", "10.50.0.1/24", "dev", peer)
	a := startAgent(t, v, nil, shortTemp(t))
	ctx := context.Background()
	n := Network{Name: "uplinked", Kind: KindMemif, Uplink: &Uplink{Kind: kind, Name: up}}
	var me *MissingPluginError
	rec, err := a.m.Add(ctx, PodInterface{ContainerID: cidA, IfName: "u0", Netns: newNetns(t), Network: n, IPs: []netip.Prefix{pfx("10.50.0.2/24")}})
	if errors.As(err, &me) {
		vpptest.Skip(t, "VPP_BIN's VPP has no %s plugin: %v", kind, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	p := startPods(t)
	pod := p.add(rec, "02:00:00:00:50:02")
	host := netip.MustParseAddr("10.50.0.1")
	mustPing(t, pod, host, host, 1, 15*time.Second)
	// The node-side kernel answered, so it saw the pod's own address; its
	// neighbour entry for that address carries the pod's MAC: no NAT, no
	// proxy in between.
	neigh := run(t, "ip", "-n", hn, "neigh", "show", "10.50.0.2")
	if !strings.Contains(neigh, "02:00:00:00:50:02") {
		t.Errorf("node netns neighbour for 10.50.0.2: %q, want the pod's MAC", neigh)
	}
	if err := a.m.Del(ctx, rec.Spec.Key()); err != nil {
		t.Fatal(err)
	}
	if ifs, _ := telcniObjects(t, a); len(ifs) != 0 {
		t.Errorf("%s uplink left after the network's last pod went: %v", kind, ifs)
	}
}

func TestVPPVLANFramesLeaveTagged(t *testing.T) {
	v := vpptest.Start(t, vpptest.Options{})
	up, peer, hostNS := uplinkVeth(t)
	a := startAgent(t, v, nil, shortTemp(t))
	ctx := context.Background()
	n := Network{Name: "vlan100", Kind: KindMemif, VLAN: 100, Uplink: &Uplink{Kind: UplinkAFPacket, Name: up}}
	rec, err := a.m.Add(ctx, PodInterface{ContainerID: cidA, IfName: "v0", Netns: newNetns(t), Network: n, IPs: []netip.Prefix{pfx("10.60.0.2/24")}})
	if err != nil {
		t.Fatal(err)
	}
	capFD := capture(t, hostNS, peer)
	p := startPods(t)
	pod := p.add(rec, "02:00:00:00:60:02")
	// The pod ARPs for a node address; the request must leave the uplink
	// with an 802.1Q tag carrying VLAN 100.
	go func() {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = pod.ping(c, netip.MustParseAddr("10.60.0.1"), netip.MustParseAddr("10.60.0.1"), 1)
	}()
	deadline := time.Now().Add(10 * time.Second)
	buf, oob := make([]byte, 2048), make([]byte, 256)
	for time.Now().Before(deadline) {
		_ = unix.SetsockoptTimeval(capFD, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 1})
		nb, noob, _, _, err := unix.Recvmsg(capFD, buf, oob, 0)
		if err != nil || nb < 14 {
			continue
		}
		if vid, ok := vlanOf(buf[:nb], oob[:noob]); ok && net.HardwareAddr(buf[6:12]).String() == "02:00:00:00:60:02" {
			if vid != 100 {
				t.Fatalf("pod frame left with VLAN %d, want 100", vid)
			}
			return
		}
	}
	t.Fatal("no tagged frame from the pod seen on the uplink")
}

// capture opens an AF_PACKET socket on ifname inside netns.
func capture(t *testing.T, netns, ifname string) int {
	t.Helper()
	type res struct {
		fd  int
		err error
	}
	ch := make(chan res, 1)
	go func() {
		// This thread enters the netns and is thrown away afterwards
		// (no UnlockOSThread), so no goroutine runs in the wrong netns.
		runtime.LockOSThread()
		f, err := os.Open(netns)
		if err != nil {
			ch <- res{-1, err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- res{-1, err}
			return
		}
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			ch <- res{-1, err}
			return
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			ch <- res{-1, err}
			return
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
			unix.Close(fd)
			ch <- res{-1, err}
			return
		}
		err = unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
		ch <- res{fd, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("capture on %s in %s: %v", ifname, netns, r.err)
	}
	t.Cleanup(func() { unix.Close(r.fd) })
	return r.fd
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// vlanOf returns the frame's VLAN id, from the frame itself or from the
// kernel's auxdata when it stripped the tag (VLAN offload on receive).
func vlanOf(frame, oob []byte) (int, bool) {
	if binary.BigEndian.Uint16(frame[12:14]) == 0x8100 && len(frame) >= 16 {
		return int(binary.BigEndian.Uint16(frame[14:16]) & 0x0fff), true
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0, false
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_PACKET && m.Header.Type == unix.PACKET_AUXDATA && len(m.Data) >= int(unsafe.Sizeof(unix.TpacketAuxdata{})) {
			aux := (*unix.TpacketAuxdata)(unsafe.Pointer(&m.Data[0]))
			if aux.Status&unix.TP_STATUS_VLAN_VALID != 0 {
				return int(aux.Vlan_tci & 0x0fff), true
			}
		}
	}
	return 0, false
}

// An uplink VPP already owns (kind dpdk: a VF from startup.conf; here an
// af_packet interface made at the VPP CLI stands in) is used, never
// deleted; the VLAN sub-interface telcni puts on it is.
func TestVPPOwnedUplinkIsKept(t *testing.T) {
	v := vpptest.Start(t, vpptest.Options{})
	up, _, _ := uplinkVeth(t)
	v.MustCLI("create host-interface name " + up)
	a := startAgent(t, v, nil, shortTemp(t))
	ctx := context.Background()
	n := Network{Name: "owned", Kind: KindMemif, VLAN: 300, Uplink: &Uplink{Kind: UplinkDPDK, Name: "host-" + up}}
	rec, err := a.m.Add(ctx, PodInterface{ContainerID: cidA, IfName: "o0", Netns: newNetns(t), Network: n})
	if err != nil {
		t.Fatal(err)
	}
	if !v.Contains("show interface", "host-"+up+".300") {
		t.Fatalf("no dot1q 300 sub-interface on host-%s:\n%s", up, v.MustCLI("show interface"))
	}
	if err := a.m.Del(ctx, rec.Spec.Key()); err != nil {
		t.Fatal(err)
	}
	out := v.MustCLI("show interface")
	if strings.Contains(out, "host-"+up+".300") || !strings.Contains(out, "host-"+up) {
		t.Errorf("after DEL want the sub-interface gone and the owned uplink kept:\n%s", out)
	}
	// Untagged: the owned uplink itself joins the bridge domain, and leaves
	// it (but stays in VPP) with the network's last pod.
	n = Network{Name: "owned-flat", Kind: KindMemif, Uplink: &Uplink{Kind: UplinkDPDK, Name: "host-" + up}}
	rec, err = a.m.Add(ctx, PodInterface{ContainerID: cidA, IfName: "o1", Netns: newNetns(t), Network: n})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.m.Del(ctx, rec.Spec.Key()); err != nil {
		t.Fatal(err)
	}
	if ifs, bds := telcniObjects(t, a); len(ifs)+len(bds) != 0 {
		t.Errorf("after DEL on an owned untagged uplink: %v %v", ifs, bds)
	}
	if out := v.MustCLI("show interface host-" + up + " addr"); strings.Contains(out, "L2 bridge") {
		t.Errorf("owned uplink still in a bridge domain:\n%s", out)
	}
	if _, err := a.m.Add(ctx, PodInterface{ContainerID: cidB, IfName: "o0", Netns: newNetns(t),
		Network: Network{Name: "nouplink", Kind: KindMemif, Uplink: &Uplink{Kind: UplinkDPDK, Name: "nosuch0"}}}); err == nil || !strings.Contains(err.Error(), "nosuch0") {
		t.Errorf("ADD with an uplink VPP does not have: %v", err)
	}
}
