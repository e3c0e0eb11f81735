package kernelpath

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/internal/netnstest"
)

// TestFirewallRulesFilterPodTraffic: the network's rules are enforced in
// the pod's netns, in order, per interface: UDP 7001 from anywhere dropped,
// everything from 10.9.0.66 dropped, the rest accepted; removed on detach.
func TestFirewallRulesFilterPodTraffic(t *testing.T) {
	node, pod, peer, bad := netnstest.New(t), netnstest.New(t), netnstest.New(t), netnstest.New(t)
	netnstest.Uplink(t, node, "up0")
	p := newPath(t, node)
	ctx := context.Background()
	if !nftablesWorks(t, pod) {
		t.Skip("this kernel has no nf_tables: covered in the kernel guest")
	}
	n := mustNet(t, `{"name":"fw","path":"macvlan","master":"up0","ipam":{"subnets":[{"cidr":"10.9.0.0/24"}]},
		"firewall":[{"direction":"ingress","action":"drop","protocol":"udp","ports":[7001]},
		            {"direction":"ingress","action":"drop","cidr":"10.9.0.66/32"},
		            {"direction":"egress","action":"drop","protocol":"udp","ports":[9]}]}`)
	plain := mustNet(t, `{"name":"plain","path":"macvlan","master":"up0","ipam":{"subnets":[{"cidr":"10.9.0.0/24"}]}}`)
	req := &attach.Request{ContainerID: "fw", Netns: pod, IfName: "fw0", Network: n,
		IPs: []attach.IPConfig{{Address: netip.MustParsePrefix("10.9.0.10/24")}}}
	iface, err := p.Attach(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	for ns, ip := range map[string]string{peer: "10.9.0.20/24", bad: "10.9.0.66/24"} {
		if _, err := p.Attach(ctx, &attach.Request{ContainerID: ns, Netns: ns, IfName: "eth0", Network: plain,
			IPs: []attach.IPConfig{{Address: netip.MustParsePrefix(ip)}}}); err != nil {
			t.Fatal(err)
		}
	}
	pod10 := netip.MustParseAddr("10.9.0.10")
	reach := func(from string, port uint16, wait time.Duration) error {
		c, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		_, err := netnstest.UDPEchoPort(c, from, pod, netip.AddrPortFrom(pod10, port))
		return err
	}
	if err := reach(peer, 7000, 5*time.Second); err != nil {
		t.Fatalf("allowed flow blocked: %v", err)
	}
	if err := reach(peer, 7001, time.Second); err == nil {
		t.Error("udp 7001 reached the pod despite the drop rule")
	}
	if err := reach(bad, 7000, time.Second); err == nil {
		t.Error("10.9.0.66 reached the pod despite the drop rule")
	}
	rec := &attach.Record{Request: *req, Interface: *iface}
	if err := p.Check(ctx, rec); err != nil {
		t.Fatalf("check: %v", err)
	}
	if err := p.Detach(ctx, rec); err != nil {
		t.Fatal(err)
	}
	c, _ := nftables.New(nftables.WithNetNSFd(int(mustNS(t, pod))))
	chains, _ := c.ListChains()
	for _, ch := range chains {
		if strings.HasSuffix(ch.Name, "-fw0") {
			t.Errorf("chain %s left after detach", ch.Name)
		}
	}
	// The pod's only firewalled interface is gone: so is telcni's table.
	if tables, _ := c.ListTables(); len(tables) != 0 {
		t.Errorf("nftables tables left after the last detach: %d (%s)", len(tables), tables[0].Name)
	}
}

func nftablesWorks(t *testing.T, ns string) bool {
	c, err := nftables.New(nftables.WithNetNSFd(int(mustNS(t, ns))))
	if err != nil {
		return false
	}
	c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "probe"})
	if err := c.Flush(); err != nil {
		return false
	}
	c.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "probe"})
	return c.Flush() == nil
}
