package kernelpath

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/kernelguest"
)

// TestGuestIPVLANModes runs each ipvlan mode with two pods on one master
// (a veth cabled to an "outside" host at 10.9.0.1). What reaches what, as
// the kernel defines it:
//   - l2: pods reach each other and hosts on the master's link (ARP works);
//     the pods' MAC is the master's.
//   - l3, l3s: pods reach each other (the master routes between them) and,
//     through the node's routing table, hosts behind the master, with
//     no ARP on the pod side; the outside host must route the pod subnet to
//     the node. No pod reaches the node's own master address in any mode:
//     ipvlan isolates slaves from their master.
func TestGuestIPVLANModes(t *testing.T) {
	kernelguest.Require(t)
	for _, mode := range []string{"l2", "l3", "l3s"} {
		t.Run(mode, func(t *testing.T) {
			node, outside, podA, podB := netnstest.New(t), netnstest.New(t), netnstest.New(t), netnstest.New(t)
			netnstest.Wire(t, node, outside, "up0", "10.9.0.1/24")
			p := newPath(t, node)
			ctx := context.Background()
			subnet, gw := "10.9.0.0/24", "10.9.0.1"
			if mode != "l2" {
				// L3: pods live in their own subnet, routed by the node.
				subnet, gw = "10.10.0.0/24", ""
				nodeAddr(t, node, "up0", "10.9.0.2/24")
				netnstest.Route(t, outside, "10.10.0.0/24", "10.9.0.2")
			}
			n := mustNet(t, `{"name":"ipv","path":"ipvlan","master":"up0","mode":"`+mode+`",
				"ipam":{"subnets":[{"cidr":"`+subnet+`"}],"routes":[{"dst":"10.9.0.0/24"}]}}`)
			if mode == "l2" {
				n.IPAM.Routes = nil
			}
			base := map[bool]string{true: "10.9.0.", false: "10.10.0."}[mode == "l2"]
			var ias []*attach.Interface
			for i, pod := range []string{podA, podB} {
				req := &attach.Request{ContainerID: "ipv" + mode + string(rune('a'+i)), Netns: pod, IfName: "ipv0", Network: n,
					IPs: []attach.IPConfig{{Address: netip.MustParsePrefix(base + []string{"10/24", "11/24"}[i])}}}
				if mode == "l2" { // dual-stack
					req.IPs = append(req.IPs, attach.IPConfig{Address: netip.MustParsePrefix([]string{"fd00:9::10/64", "fd00:9::11/64"}[i])})
				}
				for _, r := range n.IPAM.ParsedRoutes() {
					req.Routes = append(req.Routes, attach.Route{Dst: r.Dst, GW: r.GW})
				}
				ia, err := p.Attach(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				ias = append(ias, ia)
			}
			master, _ := netnstest.Handle(t, node).LinkByName("up0")
			if ias[0].MAC != master.Attrs().HardwareAddr.String() {
				t.Errorf("pod MAC %s differs from the master's %s: a new MAC appeared on the host NIC", ias[0].MAC, master.Attrs().HardwareAddr)
			}
			short, cancel := context.WithTimeout(ctx, 8*time.Second)
			defer cancel()
			if _, err := netnstest.UDPEcho(short, podA, podB, netip.MustParseAddr(base+"11")); err != nil {
				t.Errorf("pod to pod: %v", err)
			}
			if mode == "l2" {
				// IPv6 usable the moment ADD returned: no DAD wait.
				if _, err := netnstest.UDPEcho(short, podA, podB, netip.MustParseAddr("fd00:9::11")); err != nil {
					t.Errorf("pod to pod over IPv6: %v", err)
				}
			}
			if src, err := netnstest.UDPEcho(short, podA, outside, netip.MustParseAddr("10.9.0.1")); err != nil {
				t.Errorf("pod to the outside host: %v", err)
			} else if src.String() != base+"10" {
				t.Errorf("outside host saw source %s, want %s10 (no NAT)", src, base)
			}
			_ = gw
			if mode != "l2" {
				short2, cancel2 := context.WithTimeout(ctx, time.Second)
				defer cancel2()
				if _, err := netnstest.UDPEcho(short2, podA, node, netip.MustParseAddr("10.9.0.2")); err == nil {
					t.Error("pod reached its master's own address; ipvlan should isolate them")
				}
			}
		})
	}
}

func nodeAddr(t *testing.T, ns, link, cidr string) {
	t.Helper()
	h := netnstest.Handle(t, ns)
	l, err := h.LinkByName(link)
	if err != nil {
		t.Fatal(err)
	}
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.AddrAdd(l, a); err != nil {
		t.Fatal(err)
	}
}
