package vppagent

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/telcni/telcni/vppagent/vpptest"
)

func TestVPPNetworkMTU(t *testing.T) {
	v := vpptest.Start(t, vpptest.Options{})
	a := startAgent(t, v, nil, shortTemp(t))
	ctx := context.Background()
	for _, n := range []Network{
		{Name: "mtu-memif", Kind: KindMemif, MTU: 1400},
		{Name: "mtu-vhost", Kind: KindVhostUser, MTU: 1400},
	} {
		r, err := a.m.Add(ctx, PodInterface{ContainerID: cidA, IfName: "m" + n.Name[4:5], Netns: newNetns(t), Network: n, IPs: []netip.Prefix{pfx("10.95.0.2/24")}})
		if err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
		if out := v.MustCLI("show interface " + ifName(t, a, r)); !strings.Contains(out, "1400/") {
			t.Errorf("%s: MTU not applied:\n%s", n.Name, out)
		}
	}
}
