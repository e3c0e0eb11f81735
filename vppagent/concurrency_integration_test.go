package vppagent

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/telcni/telcni/vppagent/vpptest"
)

// Concurrent ADDs on one network share its bridge domain; concurrent DELs
// leave nothing behind.
func TestVPPConcurrentAddDel(t *testing.T) {
	v := vpptest.Start(t, vpptest.Options{})
	a := startAgent(t, v, nil, shortTemp(t))
	ctx := context.Background()
	const pods = 16
	specs := make([]PodInterface, pods)
	for i := range specs {
		specs[i] = PodInterface{ContainerID: fmt.Sprintf("%064x", i+1), IfName: "fh0", Netns: newNetns(t), Network: l2Net(),
			IPs: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 9, 1, byte(i + 1)}), 24)}}
	}
	run := func(f func(PodInterface) error) {
		var wg sync.WaitGroup
		errs := make(chan error, pods)
		for _, s := range specs {
			wg.Add(1)
			go func() { defer wg.Done(); errs <- f(s) }()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	run(func(s PodInterface) error { _, err := a.m.Add(ctx, s); return err })
	ifs, bds := telcniObjects(t, a)
	if len(ifs) != pods || len(bds) != 1 {
		t.Fatalf("after %d concurrent ADDs: %d interfaces, %d bridge domains", pods, len(ifs), len(bds))
	}
	run(func(s PodInterface) error { return a.m.Del(ctx, s.Key()) })
	if ifs, bds := telcniObjects(t, a); len(ifs)+len(bds) != 0 {
		t.Errorf("after concurrent DELs: %v %v", ifs, bds)
	}
}
