package kernelpath

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/google/nftables"

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
