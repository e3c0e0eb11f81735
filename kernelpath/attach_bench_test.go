package kernelpath

import (
	"context"
	"fmt"
	"testing"

	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/internal/netnstest"
)

// BenchmarkAttachDetachMacvlan is one attachment-mode interface's kernel
// work: a macvlan with a fixed MAC, two addresses and the network's routes
// made in a pod's netns, then deleted.
func BenchmarkAttachDetachMacvlan(b *testing.B) {
	node, pod := netnstest.New(b), netnstest.New(b)
	netnstest.Uplink(b, node, "up0")
	p := newPath(b, node)
	ctx := context.Background()
	n := macvlanNet(b, "")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := req(n, pod, fmt.Sprintf("c%d", i), "10.9.0.10/24", "fd00:9::10/64")
		r.MAC = "02:00:00:00:09:10"
		iface, err := p.Attach(ctx, r)
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Detach(ctx, &attach.Record{Request: *r, Interface: *iface}); err != nil {
			b.Fatal(err)
		}
	}
}
