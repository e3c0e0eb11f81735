package kernelpath

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/internal/netnstest"
)

// DEL returns when the kernel announces the deletion, before the kernel's
// call ends (see unregister). What a runtime relies on must already hold
// then: the same interface name, MAC and fixed address can be attached
// again at once, in the same netns, and carry traffic. Both ways of
// deleting are covered: one link (Detach), a pod's links (DetachAll).
func TestDetachedLinkReusableAtOnce(t *testing.T) {
	node, podA, podB := netnstest.New(t), netnstest.New(t), netnstest.New(t)
	netnstest.Uplink(t, node, "up0")
	p := newPath(t, node)
	ctx := context.Background()
	n := macvlanNet(t, "")
	if _, err := p.Attach(ctx, req(n, podB, "cB", "10.9.0.11/24", "fd00:9::11/64")); err != nil {
		t.Fatal(err)
	}
	attachA := func(round int) []*attach.Record {
		var recs []*attach.Record
		for i, ifname := range []string{"fh0", "fh1"} {
			r := req(n, podA, "cA", fmt.Sprintf("10.9.0.2%d/24", i), fmt.Sprintf("fd00:9::2%d/64", i))
			r.IfName, r.MAC = ifname, fmt.Sprintf("02:00:00:00:09:2%d", i)
			if i > 0 { // the network's routes and default route go on fh0 only
				r.DefaultRoute, r.Routes = false, nil
			}
			iface, err := p.Attach(ctx, r)
			if err != nil {
				t.Fatalf("round %d: attach %s again right after DEL: %v", round, ifname, err)
			}
			recs = append(recs, &attach.Record{Request: *r, Interface: *iface})
		}
		for _, dst := range []string{"10.9.0.20", "10.9.0.21"} {
			if _, err := netnstest.UDPEcho(ctx, podB, podA, netip.MustParseAddr(dst)); err != nil {
				t.Fatalf("round %d: pod B -> %s: %v", round, dst, err)
			}
		}
		return recs
	}
	h := netnstest.Handle(t, podA)
	gone := func(round int) {
		for _, name := range []string{"fh0", "fh1"} {
			if _, err := h.LinkByName(name); err == nil {
				t.Fatalf("round %d: %s still listed after DEL returned", round, name)
			}
		}
	}
	recs := attachA(0)
	for _, r := range recs {
		if err := p.Detach(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	gone(1)
	recs = attachA(1)
	if err := p.DetachAll(ctx, recs); err != nil {
		t.Fatal(err)
	}
	gone(2)
	attachA(2)
}
