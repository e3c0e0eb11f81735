package agent

import (
	"context"
	"strings"
	"testing"

	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/ipam"
)

// gonePods stands in for the cluster's answer (kube.Cluster.PodGone is
// proven against the real API server in e2e/): these pods are gone.
type gonePods map[string]bool

func (g gonePods) PodAnnotations(context.Context, attach.Pod) (map[string]string, error) {
	return nil, nil
}

func (g gonePods) PodGone(_ context.Context, p attach.Pod) (bool, error) { return g[p.Name], nil }

// A pod deleted without a DEL (node reboot, runtime crash) gets its links
// and addresses freed; a live pod keeps its own, and nothing younger than
// the grace period is touched.
func TestFreeGonePods(t *testing.T) {
	e := newEnv(t)
	gone, live := e.pod("du-gone"), e.pod("du-live")
	e.mustAdd(gone, "eth0", podConf(`[{"name":"fronthaul","interface":"fh0","ips":["10.20.0.7/24"]}]`))
	e.mustAdd(live, "eth0", podConf(`[{"name":"fronthaul","interface":"fh0"}]`))
	e.agent.pods = gonePods{"du-gone": true}
	if n, err := e.agent.freeGonePods(context.Background()); err != nil || n != 0 {
		t.Fatalf("within the grace period: freed %d (%v), want 0", n, err)
	}
	e.agent.goneGrace = 0
	if n, err := e.agent.freeGonePods(context.Background()); err != nil || n != 1 {
		t.Fatalf("freed %d (%v), want the gone pod's attachment", n, err)
	}
	if _, err := e.agent.get(recordKey(gone.cid, "eth0")); err == nil {
		t.Error("the gone pod's record is still there")
	}
	if _, err := e.agent.get(recordKey(live.cid, "eth0")); err != nil {
		t.Errorf("the live pod's record: %v", err)
	}
	var held []string
	_ = e.agent.store.View(func(tx *ipam.Tx) error {
		for _, a := range tx.Allocations() {
			held = append(held, a.Holder.PodName+" "+a.Address.String())
		}
		return nil
	})
	if strings.Contains(strings.Join(held, ","), "10.20.0.7") || !strings.Contains(strings.Join(held, ","), "du-live") {
		t.Errorf("held after freeing: %v, want du-live's only", held)
	}
	// A fixed address freed this way is free for the next pod at once.
	e.mustAdd(e.pod("du-next"), "eth0", podConf(`[{"name":"fronthaul","interface":"fh0","ips":["10.20.0.7/24"]}]`))
}
