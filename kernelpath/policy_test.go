package kernelpath

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/internal/netnstest"
)

// TestPolicyRoutingReplyLeavesByIngress: a pod on two networks, default
// route on A. A client behind router B (10.99.0.5, off both subnets)
// talks to the pod's B address. Without policy routing the reply follows
// the default route out of A, where nobody knows 10.99.0.5, and is lost;
// with network B's policy-routing table it leaves by B and arrives.
func TestPolicyRoutingReplyLeavesByIngress(t *testing.T) {
	for _, withTable := range []bool{true, false} {
		name := map[bool]string{true: "with-table", false: "without-table"}[withTable]
		t.Run(name, func(t *testing.T) {
			node, routerA, routerB, pod := netnstest.New(t), netnstest.New(t), netnstest.New(t), netnstest.New(t)
			netnstest.Wire(t, node, routerA, "upA", "10.81.0.1/24")
			netnstest.Wire(t, node, routerB, "upB", "10.82.0.1/24")
			netnstest.AddrOnLo(t, routerB, "10.99.0.5/32")
			p := newPath(t, node)
			ctx := context.Background()
			netA := mustNet(t, `{"name":"a","path":"macvlan","master":"upA","ipam":{"subnets":[{"cidr":"10.81.0.0/24","gateway":"10.81.0.1"}]}}`)
			tbl := ""
			if withTable {
				tbl = `,"policyRoutingTable":182`
			}
			netB := mustNet(t, `{"name":"b","path":"macvlan","master":"upB"`+tbl+`,"ipam":{"subnets":[{"cidr":"10.82.0.0/24","gateway":"10.82.0.1"}]}}`)
			for _, r := range []*attach.Request{
				{ContainerID: "pbr", Netns: pod, IfName: "a0", Network: netA, DefaultRoute: true,
					IPs: []attach.IPConfig{{Address: netip.MustParsePrefix("10.81.0.10/24"), Gateway: netip.MustParseAddr("10.81.0.1")}}},
				{ContainerID: "pbr", Netns: pod, IfName: "b0", Network: netB,
					IPs: []attach.IPConfig{{Address: netip.MustParsePrefix("10.82.0.10/24"), Gateway: netip.MustParseAddr("10.82.0.1")}}},
			} {
				if _, err := p.Attach(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
			// routerB answers for 10.99.0.5 by itself (address on its lo).
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			_, err := netnstest.UDPEchoFrom(cctx, routerB, netip.MustParseAddr("10.99.0.5"), pod, netip.MustParseAddr("10.82.0.10"))
			if withTable && err != nil {
				t.Fatalf("reply did not come back by the ingress interface: %v", err)
			}
			if !withTable && err == nil {
				t.Fatal("reply came back without policy routing: the test cannot tell the difference")
			}
		})
	}
}

func mustNet(t *testing.T, js string) *api.Network {
	t.Helper()
	n, err := api.ParseNetwork([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return n
}
