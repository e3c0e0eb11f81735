package kernelpath

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/internal/netnstest"
)

func newPath(t testing.TB, node string) *Path {
	t.Helper()
	p, err := New(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), node)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func macvlanNet(t testing.TB, extra string) *api.Network {
	t.Helper()
	n, err := api.ParseNetwork([]byte(`{"name":"fh","path":"macvlan","master":"up0","mtu":1400` + extra + `,
		"ipam":{"subnets":[{"cidr":"10.9.0.0/24","gateway":"10.9.0.1"},{"cidr":"fd00:9::/64","gateway":"fd00:9::1"}],
		"routes":[{"dst":"10.99.0.0/16","gw":"10.9.0.1"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func req(n *api.Network, pod, cid, v4, v6 string) *attach.Request {
	return &attach.Request{
		ContainerID: cid, Netns: pod, IfName: "fh0", Network: n, DefaultRoute: true,
		IPs: []attach.IPConfig{
			{Address: netip.MustParsePrefix(v4), Gateway: netip.MustParseAddr("10.9.0.1")},
			{Address: netip.MustParsePrefix(v6), Gateway: netip.MustParseAddr("fd00:9::1")},
		},
		Routes: []attach.Route{{Dst: netip.MustParsePrefix("10.99.0.0/16"), GW: netip.MustParseAddr("10.9.0.1")}},
	}
}

func TestMacvlanAttachTrafficCheckDetach(t *testing.T) {
	node, podA, podB := netnstest.New(t), netnstest.New(t), netnstest.New(t)
	netnstest.Uplink(t, node, "up0")
	p := newPath(t, node)
	ctx := context.Background()
	n := macvlanNet(t, "")
	ra := req(n, podA, "cA", "10.9.0.10/24", "fd00:9::10/64")
	ra.MAC = "02:00:00:00:09:10"
	ia, err := p.Attach(ctx, ra)
	if err != nil {
		t.Fatal(err)
	}
	if ia.MAC != "02:00:00:00:09:10" || ia.MTU != 1400 || ia.Sandbox != podA {
		t.Errorf("interface %+v", ia)
	}
	if _, err := p.Attach(ctx, req(n, podB, "cB", "10.9.0.11/24", "fd00:9::11/64")); err != nil {
		t.Fatal(err)
	}
	for _, dst := range []string{"10.9.0.11", "fd00:9::11"} {
		src, err := netnstest.UDPEcho(ctx, podA, podB, netip.MustParseAddr(dst))
		if err != nil {
			t.Fatalf("pod A -> %s: %v", dst, err)
		}
		if want := map[bool]string{true: "10.9.0.10", false: "fd00:9::10"}[src.Is4()]; src.String() != want {
			t.Errorf("source seen %s, want %s (no NAT)", src, want)
		}
	}
	rec := &attach.Record{Request: *ra, Interface: *ia}
	if err := p.Check(ctx, rec); err != nil {
		t.Fatalf("check after attach: %v", err)
	}
	// Break it behind telcni's back: CHECK must notice.
	h := netnstest.Handle(t, podA)
	link, _ := h.LinkByName("fh0")
	_ = h.AddrDel(link, &netlink.Addr{IPNet: ipNet(netip.MustParsePrefix("10.9.0.10/24"))})
	if err := p.Check(ctx, rec); err == nil || !strings.Contains(err.Error(), "address 10.9.0.10/24 missing") ||
		attach.CodeOf(err) != attach.CodeCheckFailed {
		t.Fatalf("check after address removal: %v", err)
	}
	if err := p.Detach(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if _, err := h.LinkByName("fh0"); err == nil {
		t.Fatal("fh0 still exists after detach")
	}
	if err := p.Detach(ctx, rec); err != nil {
		t.Fatalf("second detach: %v", err)
	}
	gone := *rec
	gone.Netns = "/var/run/netns/telcni-no-such-netns"
	if err := p.Detach(ctx, &gone); err != nil {
		t.Fatalf("detach with netns gone: %v", err)
	}
}

func TestMacvlanRoutesAndPolicyTable(t *testing.T) {
	node, pod := netnstest.New(t), netnstest.New(t)
	netnstest.Uplink(t, node, "up0")
	p := newPath(t, node)
	n := macvlanNet(t, `,"policyRoutingTable":100`)
	r := req(n, pod, "cP", "10.9.0.20/24", "fd00:9::20/64")
	if _, err := p.Attach(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	h := netnstest.Handle(t, pod)
	routes, _ := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{}, netlink.RT_FILTER_TABLE)
	var got []string
	for _, rt := range routes {
		got = append(got, rt.Dst.String()+" via "+rt.Gw.String()+" table "+strconv.Itoa(rt.Table))
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{
		"10.99.0.0/16 via 10.9.0.1 table 254",
		"0.0.0.0/0 via 10.9.0.1 table 254",
		"::/0 via fd00:9::1 table 254",
		"10.9.0.0/24 via <nil> table 100",
		"0.0.0.0/0 via 10.9.0.1 table 100",
		"::/0 via fd00:9::1 table 100",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("routes lack %q; have:\n%s", want, all)
		}
	}
	rules, _ := h.RuleList(netlink.FAMILY_V4)
	found := false
	for _, rule := range rules {
		if rule.Table == 100 && rule.Src != nil && rule.Src.String() == "10.9.0.20/32" {
			found = true
		}
	}
	if !found {
		t.Errorf("no rule from 10.9.0.20 lookup 100: %v", rules)
	}
	if err := p.Detach(context.Background(), &attach.Record{Request: *r}); err != nil {
		t.Fatal(err)
	}
	rules, _ = h.RuleList(netlink.FAMILY_V4)
	for _, rule := range rules {
		if rule.Table == 100 {
			t.Errorf("rule left after detach: %v", rule)
		}
	}
}

func TestMacvlanErrorsLeaveNothing(t *testing.T) {
	node, pod := netnstest.New(t), netnstest.New(t)
	netnstest.Uplink(t, node, "up0")
	p := newPath(t, node)
	ctx := context.Background()

	missing := macvlanNet(t, "")
	missing.Master = "nosuch0"
	_, err := p.Attach(ctx, req(missing, pod, "c1", "10.9.0.30/24", "fd00:9::30/64"))
	if err == nil || !strings.Contains(err.Error(), `master "nosuch0" not found`) || attach.CodeOf(err) != attach.CodeInvalidConfig {
		t.Fatalf("missing master: %v", err)
	}
	// A route whose gateway is unreachable fails after the link exists:
	// the link must be gone afterwards.
	bad := req(macvlanNet(t, ""), pod, "c2", "10.9.0.31/24", "fd00:9::31/64")
	bad.Routes = append(bad.Routes, attach.Route{Dst: netip.MustParsePrefix("10.77.0.0/16"), GW: netip.MustParseAddr("10.200.0.1")})
	if _, err := p.Attach(ctx, bad); err == nil {
		t.Fatal("attach with unreachable gateway succeeded")
	}
	links, _ := netnstest.Handle(t, pod).LinkList()
	for _, l := range links {
		if l.Attrs().Name != "lo" {
			t.Errorf("link %s left in pod after failed attach", l.Attrs().Name)
		}
	}
	if _, err := p.Attach(ctx, req(macvlanNet(t, ""), "/var/run/netns/telcni-absent", "c3", "10.9.0.32/24", "fd00:9::32/64")); !errors.Is(err, errNetnsGone) {
		t.Errorf("absent netns: %v", err)
	}
}
