package dataplane

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/telcni/telcni/perf/trex"
	"github.com/telcni/telcni/vppagent"
	"github.com/telcni/telcni/vppagent/vpptest"
)

// DUT is a device under test with two ports a generator attaches to.
type DUT struct {
	Name string
	// How says how the device was built (for the report).
	How string
	// Peers are the memif servers of a VPP scenario (port 0, port 1).
	Peers *[2]trex.MemifPeer
	// Ports opens the software generator's ports of a kernel scenario.
	Ports func() (tx, rx port, err error)
	Addr  Addressing
	// Counters returns the device's own view (VPP's interface counters)
	// for the report when a search looks wrong.
	Counters func() string
}

var (
	ipA  = netip.MustParseAddr("10.90.0.5")
	ipB  = netip.MustParseAddr("10.90.0.6")
	mac0 = net.HardwareAddr{2, 0, 0, 0xa0, 0, 1} // port 0 (pod A)
	mac1 = net.HardwareAddr{2, 0, 0, 0xa0, 0, 2} // port 1 (pod B)
)

// vppScenarios are the scenarios a VPP serves.
var vppScenarios = map[string]func(t testing.TB) *DUT{
	"vpp-l2":       func(t testing.TB) *DUT { return telcniVPP(t, false, nil) },
	"vpp-l3":       func(t testing.TB) *DUT { return telcniVPP(t, true, nil) },
	"vpp-xconnect": xconnectVPP,
	// 1,000 ACL rules on the L2 network (MultiNetworkPolicy and firewall
	// rules both become these ACLs), against vpp-l2 without any.
	"vpp-l2-acl1000": func(t testing.TB) *DUT { return telcniVPP(t, false, aclRules(1000)) },
}

// aclRules is a default-deny ingress firewall of n rules: n-2 that match
// other peers, then the one that admits the generator's traffic, then a
// drop of everything else.
func aclRules(n int) []vppagent.FirewallRule {
	var fw []vppagent.FirewallRule
	for i := 0; i < n-2; i++ {
		peer := netip.AddrFrom4([4]byte{172, 16, byte(i / 256), byte(i % 256)})
		fw = append(fw, vppagent.FirewallRule{Direction: "ingress", Protocol: "udp", CIDR: netip.PrefixFrom(peer, 32), Ports: []int{12}})
	}
	fw = append(fw, vppagent.FirewallRule{Direction: "ingress", Protocol: "udp", CIDR: netip.MustParsePrefix("10.90.0.0/24"), Ports: []int{12}})
	return append(fw, vppagent.FirewallRule{Direction: "ingress", Drop: true})
}

func startVPP(t testing.TB) *vpptest.VPP {
	// Busy: VPP's main loop polls without sleeping, as in production.
	return vpptest.Start(t, vpptest.Options{Busy: true})
}

func shortDir(t testing.TB) string {
	d, err := os.MkdirTemp("", "tperf")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// telcniVPP is VPP configured by telcni's vppagent, as the agent does for
// two pods with one memif each (socket files) on an L2 or a routed network.
func telcniVPP(t testing.TB, routed bool, firewall []vppagent.FirewallRule) *DUT {
	t.Helper()
	v := startVPP(t)
	m, err := vppagent.NewManager(vppagent.Config{
		Conn:   vppagent.ConnConfig{APISocket: v.APISocket, StatsSocket: v.StatsSocket},
		RunDir: shortDir(t),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); m.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	deadline := time.Now().Add(15 * time.Second)
	for m.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("vppagent not ready: %v", m.Ready())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := m.Retain(ctx, nil); err != nil {
		t.Fatal(err)
	}
	n := vppagent.Network{Name: "perf-l2", Kind: vppagent.KindMemif, Memif: vppagent.MemifOptions{Socket: vppagent.SocketFile}, Firewall: firewall}
	ipA, ipB := netip.MustParsePrefix("10.90.0.5/24"), netip.MustParsePrefix("10.90.0.6/24")
	gw := netip.MustParseAddr("10.90.0.1")
	if routed {
		n.Name, n.L3 = "perf-l3", true
	}
	var recs [2]*vppagent.Record
	for i, ip := range []netip.Prefix{ipA, ipB} {
		spec := vppagent.PodInterface{ContainerID: fmt.Sprintf("perfpod%d", i), IfName: "net1", Network: n, IPs: []netip.Prefix{ip}}
		if routed {
			spec.Gateways = []netip.Addr{gw}
		}
		r, err := m.Add(ctx, spec)
		if err != nil {
			t.Fatalf("telcni ADD of pod %d: %v", i, err)
		}
		recs[i] = r
	}
	d := &DUT{
		Peers: &[2]trex.MemifPeer{
			{Socket: recs[0].DeviceInfo.Memif.Path, ID: recs[0].DeviceInfo.Memif.ID},
			{Socket: recs[1].DeviceInfo.Memif.Path, ID: recs[1].DeviceInfo.Memif.ID},
		},
		Addr:     Addressing{SrcMAC: mac0, DstMAC: mac1, SrcIP: ipA.Addr(), DstIP: ipB.Addr(), RevSrcMAC: mac1, RevDstMAC: mac0},
		Counters: vppCounters(v),
	}
	if !routed && len(firewall) > 0 {
		d.Name = fmt.Sprintf("vpp-l2-acl%d", len(firewall))
		d.How = fmt.Sprintf("vpp-l2 with a default-deny ingress firewall of %d rules as VPP ACLs on the pods' interfaces (the admitting rule last but one)", len(firewall))
		return d
	}
	if !routed {
		d.Name, d.How = "vpp-l2", "telcni vppagent: two memif pods in one bridge domain (MAC learning, flooding off once learned)"
		return d
	}
	// Routed: frames go to VPP's MAC on pod A's memif; VPP routes to pod
	// B's /32. Pod B's neighbour entry is set up front (a pod answers ARP
	// once; the generator's ports do not).
	ifA, err := ifName(v, recs[0].SwIfIndex)
	if err != nil {
		t.Fatal(err)
	}
	ifB, err := ifName(v, recs[1].SwIfIndex)
	if err != nil {
		t.Fatal(err)
	}
	gwMAC, err := hwAddr(v, ifA)
	if err != nil {
		t.Fatal(err)
	}
	v.MustCLI(fmt.Sprintf("set ip neighbor %s %s %s", ifB, ipB.Addr(), mac1))
	d.Name, d.How = "vpp-l3", "telcni vppagent: two memif pods on a routed network (VPP routes /32s; pod B's neighbour static)"
	d.Addr.DstMAC, d.Addr.RevSrcMAC, d.Addr.RevDstMAC = gwMAC, nil, nil
	return d
}

// xconnectVPP is the ceiling: VPP hand-configured with two memif servers
// cross-connected at L2, nothing else.
func xconnectVPP(t testing.TB) *DUT {
	t.Helper()
	v := startVPP(t)
	dir := shortDir(t)
	var peers [2]trex.MemifPeer
	var names [2]string
	for i := range peers {
		sock := filepath.Join(dir, fmt.Sprintf("xc%d.sock", i))
		v.MustCLI(fmt.Sprintf("create memif socket id %d filename %s", 10+i, sock))
		out := v.MustCLI(fmt.Sprintf("create interface memif socket-id %d id 0 master", 10+i))
		names[i] = strings.TrimSpace(out)
		if names[i] == "" {
			names[i] = fmt.Sprintf("memif%d/0", 10+i)
		}
		v.MustCLI("set interface state " + names[i] + " up")
		peers[i] = trex.MemifPeer{Socket: sock, ID: 0}
	}
	v.MustCLI(fmt.Sprintf("set interface l2 xconnect %s %s", names[0], names[1]))
	v.MustCLI(fmt.Sprintf("set interface l2 xconnect %s %s", names[1], names[0]))
	return &DUT{
		Name: "vpp-xconnect", How: "VPP by hand: two memif servers in an l2 xconnect (the ceiling)",
		Peers:    &peers,
		Addr:     Addressing{SrcMAC: mac0, DstMAC: mac1, SrcIP: netip.MustParseAddr("10.90.0.5"), DstIP: netip.MustParseAddr("10.90.0.6")},
		Counters: vppCounters(v),
	}
}

var ifLine = regexp.MustCompile(`(?m)^(\S+)\s+(\d+)\s+(up|down)`)

// ifName is VPP's name of the interface with index idx.
func ifName(v *vpptest.VPP, idx uint32) (string, error) {
	out, err := v.CLI("show interface")
	if err != nil {
		return "", err
	}
	for _, m := range ifLine.FindAllStringSubmatch(out, -1) {
		if m[2] == fmt.Sprint(idx) {
			return m[1], nil
		}
	}
	return "", fmt.Errorf("no interface with sw_if_index %d in:\n%s", idx, out)
}

var ethAddr = regexp.MustCompile(`Ethernet address ([0-9a-f:]{17})`)

// hwAddr is the MAC of VPP's interface name.
func hwAddr(v *vpptest.VPP, name string) (net.HardwareAddr, error) {
	out, err := v.CLI("show hardware-interfaces " + name)
	if err != nil {
		return nil, err
	}
	m := ethAddr.FindStringSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("no Ethernet address for %s in:\n%s", name, out)
	}
	return net.ParseMAC(m[1])
}

// vppCounters shows VPP's view: interface counters, errors and where the
// main loop spends its time.
func vppCounters(v *vpptest.VPP) func() string {
	return func() string {
		var b strings.Builder
		for _, c := range []string{"show interface", "show errors", "show runtime"} {
			out, err := v.CLI(c)
			if err != nil {
				out = err.Error()
			}
			fmt.Fprintf(&b, "vpp# %s\n%s\n", c, out)
		}
		return b.String()
	}
}
