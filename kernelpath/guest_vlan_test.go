package kernelpath

import (
	"context"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/kernelguest"
)

// TestGuestVLANIsolationAndTagging: two VLAN networks with the same subnet
// on one master, so that only the VLAN tag separates them. The outside host
// on the master's cable has a VLAN-100 sub-interface only: what reaches it
// was tagged 100 on the wire.
func TestGuestVLANIsolationAndTagging(t *testing.T) {
	kernelguest.Require(t)
	for _, mode := range []string{"macvlan", "ipvlan", "direct"} {
		t.Run(mode, func(t *testing.T) {
			node, outside := netnstest.New(t), netnstest.New(t)
			netnstest.Wire(t, node, outside, "up0")
			oh := netnstest.Handle(t, outside)
			wire, _ := oh.LinkByName("up0p")
			v100 := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: "up0p.100", ParentIndex: wire.Attrs().Index}, VlanId: 100}
			if err := oh.LinkAdd(v100); err != nil {
				t.Fatal(err)
			}
			a, _ := netlink.ParseAddr("10.77.0.1/24")
			a.Flags = 0x80
			_ = oh.AddrAdd(v100, a)
			_ = oh.LinkSetUp(v100)

			p := newPath(t, node)
			ctx := context.Background()
			net := func(name string, vlan int) *api.Network {
				return mustNet(t, `{"name":"`+name+`","path":"vlan","master":"up0","vlan":`+strconv.Itoa(vlan)+`,"mode":"`+mode+`",
					"ipam":{"subnets":[{"cidr":"10.77.0.0/24"}]}}`)
			}
			n100, n200 := net("v100", 100), net("v200", 200)
			pods := map[string]string{}
			attachPod := func(name string, n *api.Network, ip string) *attach.Record {
				pods[name] = netnstest.New(t)
				req := &attach.Request{ContainerID: name, Netns: pods[name], IfName: "vl0", Network: n,
					IPs: []attach.IPConfig{{Address: netip.MustParsePrefix(ip)}}}
				if mode == "direct" && name == "a100" {
					req.MAC = "02:00:00:77:00:10"
				}
				iface, err := p.Attach(ctx, req)
				if err != nil {
					t.Fatalf("attach %s: %v", name, err)
				}
				return &attach.Record{Request: *req, Interface: *iface}
			}
			ra := attachPod("a100", n100, "10.77.0.10/24")
			if mode == "direct" {
				// The VLAN link moved into the pod takes a requested MAC...
				l, _ := netnstest.Handle(t, pods["a100"]).LinkByName("vl0")
				if l.Attrs().HardwareAddr.String() != "02:00:00:77:00:10" {
					t.Errorf("direct VLAN pod MAC %s, want the requested 02:00:00:77:00:10", l.Attrs().HardwareAddr)
				}
				// ...and is the only one of its VLAN on the master.
				req := ra.Request
				req.ContainerID, req.Netns = "a100-second", netnstest.New(t)
				if _, err := p.Attach(ctx, &req); err == nil || !strings.Contains(err.Error(), "one pod per VLAN") {
					t.Errorf("second direct pod on VLAN 100: %v", err)
				}
			}
			rb := attachPod("b200", n200, "10.77.0.20/24")
			var rc *attach.Record
			if mode != "direct" { // direct: one pod per VLAN per master
				rc = attachPod("c100", n100, "10.77.0.30/24")
			}
			// Reachability gets time (TCG under load is slow); isolation
			// needs only long enough for frames to have arrived.
			quick := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 1500*time.Millisecond) }
			patient := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 8*time.Second) }
			c1, cancel1 := patient()
			defer cancel1()
			before := rxPackets(t, oh, "up0p.100")
			if _, err := netnstest.UDPEcho(c1, pods["a100"], outside, netip.MustParseAddr("10.77.0.1")); err != nil {
				t.Errorf("VLAN 100 pod to the outside host on VLAN 100: %v", err)
			}
			if rxPackets(t, oh, "up0p.100") <= before {
				t.Error("no frame arrived on the outside host's VLAN 100 interface")
			}
			c2, cancel2 := quick()
			defer cancel2()
			if _, err := netnstest.UDPEcho(c2, pods["b200"], outside, netip.MustParseAddr("10.77.0.1")); err == nil {
				t.Error("VLAN 200 pod reached a host on VLAN 100")
			}
			c3, cancel3 := quick()
			defer cancel3()
			if _, err := netnstest.UDPEcho(c3, pods["a100"], pods["b200"], netip.MustParseAddr("10.77.0.20")); err == nil {
				t.Error("VLAN 100 pod reached the VLAN 200 pod over the same master")
			}
			nh := netnstest.Handle(t, node)
			if mode == "direct" {
				if _, err := nh.LinkByName("up0.100"); err == nil {
					t.Error("direct mode made a host link")
				}
				return
			}
			c4, cancel4 := patient()
			defer cancel4()
			if _, err := netnstest.UDPEcho(c4, pods["a100"], pods["c100"], netip.MustParseAddr("10.77.0.30")); err != nil {
				t.Errorf("pods on VLAN 100 do not reach each other: %v", err)
			}
			// One shared host link per (master, VLAN); removed by sync when
			// neither a pod nor a definition needs it.
			for _, r := range []*attach.Record{ra, rc} {
				if err := p.Detach(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
			if err := p.SyncHostLinks(ctx, func() ([]*api.Network, error) { return []*api.Network{rb.Network}, nil }); err != nil {
				t.Fatal(err)
			}
			if _, err := nh.LinkByName("up0.100"); err == nil {
				t.Error("up0.100 kept after its last pod left and the network was removed")
			}
			if _, err := nh.LinkByName("up0.200"); err != nil {
				t.Error("up0.200 removed while its pod is attached")
			}
		})
	}
}

func rxPackets(t *testing.T, h *netlink.Handle, name string) uint64 {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Statistics.RxPackets
}
