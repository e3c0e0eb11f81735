package kernelpath

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/policy"
)

// policyLab is a server pod and two clients on one macvlan network (no
// firewall rules unless given), with real UDP and TCP between them.
type policyLab struct {
	p               *Path
	server, a, b    string
	srvIP, aIP, bIP netip.Addr
	srvRec          *attach.Record
	tcpPort         int
	ctx             context.Context
}

func newPolicyLab(t *testing.T, firewall string) *policyLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, macvlan and nftables")
	}
	node := netnstest.New(t)
	l := &policyLab{server: netnstest.New(t), a: netnstest.New(t), b: netnstest.New(t), ctx: context.Background(),
		srvIP: netip.MustParseAddr("10.9.0.10"), aIP: netip.MustParseAddr("10.9.0.20"), bIP: netip.MustParseAddr("10.9.0.30")}
	if !nftablesWorks(t, l.server) {
		t.Skip("this kernel has no nf_tables: covered in the kernel guest")
	}
	netnstest.Uplink(t, node, "up0")
	l.p = newPath(t, node)
	srvNet := mustNet(t, `{"name":"pol","path":"macvlan","master":"up0","ipam":{"subnets":[{"cidr":"10.9.0.0/24"}]}`+firewall+`}`)
	plain := mustNet(t, `{"name":"plain","path":"macvlan","master":"up0","ipam":{"subnets":[{"cidr":"10.9.0.0/24"}]}}`)
	req := &attach.Request{ContainerID: "srv", Netns: l.server, IfName: "net1", Network: srvNet,
		IPs: []attach.IPConfig{{Address: netip.PrefixFrom(l.srvIP, 24)}}}
	iface, err := l.p.Attach(l.ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	l.srvRec = &attach.Record{Request: *req, Interface: *iface}
	for ns, ip := range map[string]netip.Addr{l.a: l.aIP, l.b: l.bIP} {
		if _, err := l.p.Attach(l.ctx, &attach.Request{ContainerID: ns, Netns: ns, IfName: "eth0", Network: plain,
			IPs: []attach.IPConfig{{Address: netip.PrefixFrom(ip, 24)}}}); err != nil {
			t.Fatal(err)
		}
	}
	// A TCP echo server on the server pod.
	var ln net.Listener
	if err := netnstest.Do(l.server, func() (err error) { ln, err = net.Listen("tcp", l.srvIP.String()+":0"); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	l.tcpPort = ln.Addr().(*net.TCPAddr).Port
	go func() { // owned: ends when the cleanup closes ln
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = bufioCopy(c) }() // owned: ends when the peer closes
		}
	}()
	return l
}

func bufioCopy(c net.Conn) (int64, error) {
	r := bufio.NewReader(c)
	var n int64
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return n, err
		}
		if _, err := c.Write(line); err != nil {
			return n, err
		}
		n += int64(len(line))
	}
}

func (l *policyLab) apply(t *testing.T, r policy.Rules) time.Duration {
	t.Helper()
	start := time.Now()
	if err := ApplyNetworkPolicy(mustNS(t, l.server), "net1", r); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

// udp reports whether a datagram from ns reaches the server's port and
// its echo comes back.
func (l *policyLab) udp(from string, port uint16, wait time.Duration) bool {
	c, cancel := context.WithTimeout(l.ctx, wait)
	defer cancel()
	_, err := netnstest.UDPEchoPort(c, from, l.server, netip.AddrPortFrom(l.srvIP, port))
	return err == nil
}

// tcp reports whether a connection from ns to the server's TCP echo opens.
func (l *policyLab) tcp(from string, wait time.Duration) bool {
	c, err := l.dial(from, wait)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func (l *policyLab) dial(from string, wait time.Duration) (net.Conn, error) {
	var c net.Conn
	err := netnstest.Do(from, func() (err error) {
		c, err = net.DialTimeout("tcp", fmt.Sprintf("%s:%d", l.srvIP, l.tcpPort), wait)
		return err
	})
	return c, err
}

func ingressAllow(rules ...policy.Rule) policy.Rules {
	return policy.Rules{Ingress: policy.Direction{Isolated: true, Allow: rules}}
}

func host(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// TestNetworkPolicyFiltersPodTraffic: on a network without firewall rules,
// an open policy makes no table; an isolated ingress lets through only the
// allowed peer, protocol and port (UDP and TCP); egress isolation stops
// what the pod opens but not the replies to what it accepted; open again,
// everything passes; detach leaves nothing behind.
func TestNetworkPolicyFiltersPodTraffic(t *testing.T) {
	l := newPolicyLab(t, "")
	l.apply(t, policy.Rules{})
	c, _ := nftables.New(nftables.WithNetNSFd(int(mustNS(t, l.server))))
	if tables, _ := c.ListTables(); len(tables) != 0 {
		t.Fatalf("an open policy made %d nftables tables", len(tables))
	}
	if !l.udp(l.a, 7000, 5*time.Second) || !l.tcp(l.b, 2*time.Second) {
		t.Fatal("no policy, yet traffic does not pass: the lab is broken")
	}

	took := l.apply(t, ingressAllow(
		policy.Rule{Peer: host(l.aIP), Protocol: "udp", Port: 7000, EndPort: 7000},
		policy.Rule{Peer: host(l.aIP), Protocol: "tcp", Port: uint16(l.tcpPort), EndPort: uint16(l.tcpPort)},
		policy.Rule{Peer: netip.MustParsePrefix("10.9.0.28/30"), Protocol: "udp", Port: 7100, EndPort: 7200},
	))
	t.Logf("policy applied in %v", took)
	for _, tc := range []struct {
		name string
		ok   bool
		want bool
	}{
		{"a udp 7000 allowed", l.udp(l.a, 7000, 2*time.Second), true},
		{"a udp 7001 denied (port)", l.udp(l.a, 7001, 500*time.Millisecond), false},
		{"b udp 7000 denied (peer)", l.udp(l.b, 7000, 500*time.Millisecond), false},
		{"b udp 7150 allowed (prefix, range)", l.udp(l.b, 7150, 2*time.Second), true},
		{"b udp 7201 denied (past the range)", l.udp(l.b, 7201, 500*time.Millisecond), false},
		{"a tcp allowed", l.tcp(l.a, 2*time.Second), true},
		{"b tcp denied", l.tcp(l.b, 500*time.Millisecond), false},
	} {
		if tc.ok != tc.want {
			t.Errorf("%s: passed=%v", tc.name, tc.ok)
		}
	}

	// Egress isolated with nothing allowed: the pod's own flows stop, the
	// replies to allowed ingress still leave (conntrack reply direction).
	l.apply(t, policy.Rules{Ingress: ingressAllow(policy.Rule{Peer: host(l.aIP)}).Ingress, Egress: policy.Direction{Isolated: true}})
	if !l.udp(l.a, 7000, 2*time.Second) {
		t.Error("reply to an allowed ingress flow dropped by egress isolation")
	}
	c2, cancel := context.WithTimeout(l.ctx, 500*time.Millisecond)
	defer cancel()
	if _, err := netnstest.UDPEcho(c2, l.server, l.a, l.aIP); err == nil {
		t.Error("egress isolated with nothing allowed, yet the pod reached a")
	}

	l.apply(t, policy.Rules{})
	if !l.udp(l.b, 7000, 2*time.Second) || !l.tcp(l.b, 2*time.Second) {
		t.Error("open policy again, yet b is still blocked")
	}

	if err := l.p.Detach(l.ctx, l.srvRec); err != nil {
		t.Fatal(err)
	}
	if tables, _ := c.ListTables(); len(tables) != 0 {
		t.Errorf("nftables table left after detach of the policy's only interface")
	}
}

// TestNetworkPolicyCutsRunningFlow: a TCP flow running while the policy
// stops allowing its peer stops at once (original-direction packets are
// judged every time), and resumes when the policy allows it again.
func TestNetworkPolicyCutsRunningFlow(t *testing.T) {
	l := newPolicyLab(t, "")
	l.apply(t, ingressAllow(policy.Rule{Peer: host(l.aIP), Protocol: "tcp"}))
	conn, err := l.dial(l.a, 2*time.Second)
	if err != nil {
		t.Fatalf("allowed flow: %v", err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	echo := func(wait time.Duration) bool {
		_ = conn.SetDeadline(time.Now().Add(wait))
		if _, err := conn.Write([]byte("ping\n")); err != nil {
			return false
		}
		_, err := r.ReadBytes('\n')
		return err == nil
	}
	if !echo(2 * time.Second) {
		t.Fatal("allowed flow does not echo")
	}
	l.apply(t, ingressAllow(policy.Rule{Peer: host(l.bIP), Protocol: "tcp"}))
	if echo(time.Second) {
		t.Fatal("flow from a still runs after the policy stopped allowing a")
	}
	took := l.apply(t, ingressAllow(policy.Rule{Peer: host(l.aIP), Protocol: "tcp"}))
	start := time.Now()
	// The unanswered line is retransmitted; its echo arrives with TCP's
	// backoff (a second or two).
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadBytes('\n'); err != nil {
		t.Fatalf("flow did not resume after the policy allowed a again: %v", err)
	}
	t.Logf("allowed again: applied in %v, flow resumed after %v", took, time.Since(start))
}

// TestNetworkPolicyAfterFirewall: the network's firewall rules decide
// first; the policy decides what they leave.
func TestNetworkPolicyAfterFirewall(t *testing.T) {
	l := newPolicyLab(t, `,"firewall":[{"direction":"ingress","action":"drop","protocol":"udp","ports":[7002]}]`)
	l.apply(t, ingressAllow(policy.Rule{Peer: host(l.aIP)}))
	if l.udp(l.a, 7002, 500*time.Millisecond) {
		t.Error("the policy allows a, but the firewall's drop of udp 7002 must win")
	}
	if !l.udp(l.a, 7000, 2*time.Second) {
		t.Error("a udp 7000: firewall passes it, policy allows it, yet it is dropped")
	}
	if l.udp(l.b, 7000, 500*time.Millisecond) {
		t.Error("b is not allowed by the policy, yet it passed")
	}
	if err := l.p.Check(l.ctx, l.srvRec); err != nil {
		t.Errorf("check with policy chains present: %v", err)
	}
	if err := l.p.Detach(l.ctx, l.srvRec); err != nil {
		t.Fatal(err)
	}
	c, _ := nftables.New(nftables.WithNetNSFd(int(mustNS(t, l.server))))
	if tables, _ := c.ListTables(); len(tables) != 0 {
		t.Errorf("nftables table left after detach")
	}
}

// TestNetworkPolicyPeerSets: a policy of many host peers (label-selected
// pods) becomes nftables sets, one per family × protocol × port kind,
// matched by one lookup each: IPv4 and IPv6, with a port and any port.
// Only the peers in them pass, on their port; replacing the policy refills
// the sets in the same transaction; a policy too small for sets is rules
// again; detaching the interface takes its sets, and leaves another
// interface's.
func TestNetworkPolicyPeerSets(t *testing.T) {
	l := newPolicyLab(t, "")
	a6, b6, srv6 := netip.MustParseAddr("fd09::20"), netip.MustParseAddr("fd09::30"), netip.MustParseAddr("fd09::10")
	for ns, a := range map[string]struct {
		ifname string
		addr   netip.Addr
	}{l.server: {"net1", srv6}, l.a: {"eth0", a6}, l.b: {"eth0", b6}} {
		h := netnstest.Handle(t, ns)
		link, err := h.LinkByName(a.ifname)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.AddrAdd(link, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(a.addr, 64)), Flags: unix.IFA_F_NODAD}); err != nil {
			t.Fatal(err)
		}
	}
	udp6 := func(from string, port uint16, wait time.Duration) bool {
		c, cancel := context.WithTimeout(l.ctx, wait)
		defer cancel()
		_, err := netnstest.UDPEchoPort(c, from, l.server, netip.AddrPortFrom(srv6, port))
		return err == nil
	}
	// others are n peers that are not in the lab, in 10.9.1.0/24 and
	// fd09:1::/64, on port.
	others := func(n int, proto string, port uint16) []policy.Rule {
		var out []policy.Rule
		for i := range n {
			for _, a := range []netip.Addr{netip.AddrFrom4([4]byte{10, 9, 1, byte(i)}), netip.AddrFrom16([16]byte{0: 0xfd, 1: 0x09, 3: 1, 15: byte(i)})} {
				out = append(out, policy.Rule{Peer: host(a), Protocol: proto, Port: port, EndPort: port})
			}
		}
		return out
	}
	rules := append(others(200, "udp", 7000),
		policy.Rule{Peer: host(l.aIP), Protocol: "udp", Port: 7000, EndPort: 7000},
		policy.Rule{Peer: host(a6), Protocol: "udp", Port: 7000, EndPort: 7000},
		policy.Rule{Peer: host(l.bIP), Protocol: "udp", Port: 7001, EndPort: 7001},
		policy.Rule{Peer: host(b6), Protocol: "udp", Port: 7001, EndPort: 7001},
		policy.Rule{Peer: host(l.aIP), Protocol: "tcp"})
	rules = append(rules, others(5, "tcp", 0)...)
	took := l.apply(t, ingressAllow(rules...))
	t.Logf("%d rules applied in %v", len(rules), took)
	c, _ := nftables.New(nftables.WithNetNSFd(int(mustNS(t, l.server))))
	table := &nftables.Table{Family: nftables.TableFamilyINet, Name: fwTable}
	sets := func() map[string]int {
		all, err := c.GetSets(table)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int{}
		for _, s := range all {
			elems, err := c.GetSetElements(s)
			if err != nil {
				t.Fatal(err)
			}
			out[s.Name] = len(elems)
		}
		return out
	}
	want := map[string]int{"mnp-ingress-net1-set-v4-udp-port": 202, "mnp-ingress-net1-set-v6-udp-port": 202, "mnp-ingress-net1-set-v4-tcp-any": 6, "mnp-ingress-net1-set-v6-tcp-any": 5}
	if got := sets(); !maps.Equal(got, want) {
		t.Fatalf("sets %v, want %v", got, want)
	}
	check := func(stage string, cases []struct {
		name     string
		ok, want bool
	}) {
		t.Helper()
		for _, tc := range cases {
			if tc.ok != tc.want {
				t.Errorf("%s: %s: passed=%v", stage, tc.name, tc.ok)
			}
		}
	}
	type tc = struct {
		name     string
		ok, want bool
	}
	check("sets", []tc{
		{"a udp 7000", l.udp(l.a, 7000, 2*time.Second), true},
		{"a6 udp 7000", udp6(l.a, 7000, 2*time.Second), true},
		{"a udp 7001 (port)", l.udp(l.a, 7001, 500*time.Millisecond), false},
		{"b udp 7001", l.udp(l.b, 7001, 2*time.Second), true},
		{"b6 udp 7001", udp6(l.b, 7001, 2*time.Second), true},
		{"b udp 7000 (port)", l.udp(l.b, 7000, 500*time.Millisecond), false},
		{"b6 udp 7000 (port)", udp6(l.b, 7000, 500*time.Millisecond), false},
		{"a tcp (any port)", l.tcp(l.a, 2*time.Second), true},
		{"b tcp (peer)", l.tcp(l.b, 500*time.Millisecond), false},
	})

	// Replaced: a is gone from the sets, b stays.
	l.apply(t, ingressAllow(append(others(3, "udp", 7001), policy.Rule{Peer: host(l.bIP), Protocol: "udp", Port: 7001, EndPort: 7001})...))
	if got := sets(); got["mnp-ingress-net1-set-v4-udp-port"] != 4 || got["mnp-ingress-net1-set-v6-udp-port"] != 0 || got["mnp-ingress-net1-set-v4-tcp-any"] != 0 {
		t.Fatalf("after the replacement: sets %v", got)
	}
	check("replaced", []tc{
		{"a udp 7000 (no longer allowed)", l.udp(l.a, 7000, 500*time.Millisecond), false},
		{"b udp 7001", l.udp(l.b, 7001, 2*time.Second), true},
		{"a tcp (no longer allowed)", l.tcp(l.a, 500*time.Millisecond), false},
	})

	// Too few for a set: rules again, sets empty.
	l.apply(t, ingressAllow(policy.Rule{Peer: host(l.bIP), Protocol: "udp", Port: 7001, EndPort: 7001}))
	for name, n := range sets() {
		if n != 0 {
			t.Errorf("one allowed peer: set %s still holds %d", name, n)
		}
	}
	check("rules", []tc{
		{"b udp 7001", l.udp(l.b, 7001, 2*time.Second), true},
		{"a udp 7001", l.udp(l.a, 7001, 500*time.Millisecond), false},
	})

	// Another interface's policy keeps the table: detaching net1 takes
	// only net1's sets.
	if err := ApplyNetworkPolicy(mustNS(t, l.server), "net2", ingressAllow(others(4, "sctp", 38412)...)); err != nil {
		t.Fatal(err)
	}
	if err := l.p.Detach(l.ctx, l.srvRec); err != nil {
		t.Fatal(err)
	}
	want = map[string]int{"mnp-ingress-net2-set-v4-sctp-port": 4, "mnp-ingress-net2-set-v6-sctp-port": 4}
	if got := sets(); !maps.Equal(got, want) {
		t.Fatalf("after detaching net1: sets %v, want net2's only %v", got, want)
	}
}
