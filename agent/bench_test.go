package agent

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/internal/policytest"
	"github.com/telcni/telcni/policy"
)

const benchPods = 100

// BenchmarkAdd100Pods3Interfaces ADDs 100 pods with 3 interfaces each
// (one fixed address per pod) concurrently, then DELs them. The
// kernel-only sub-benchmark makes the same 300 interfaces straight through
// kernelpath, without the agent's IPAM and records: the ratio of the two is
// the agent's overhead, measured in the same process on the same machine.
func BenchmarkAdd100Pods3Interfaces(b *testing.B) {
	e := newEnv(b)
	pods := make([]pod, benchPods)
	for i := range pods {
		pods[i] = pod{ns: "bench", name: fmt.Sprintf("p%03d", i), cid: fmt.Sprintf("bench-%03d", i), netns: netnstest.New(b)}
	}
	// Fixed addresses outside the dynamic range 10.20.0.100-199, as an
	// operator plans them.
	static := func(i int) int {
		if i < 98 {
			return 2 + i
		}
		return 200 + i - 98
	}
	ann := func(i int) string {
		return fmt.Sprintf(`[{"name":"fronthaul","ips":["10.20.0.%d/24"]},{"name":"userplane"},{"name":"fronthaul","interface":"fh1"}]`, static(i))
	}
	b.Run("agent", func(b *testing.B) {
		for n := 0; n < b.N; n++ {
			runAll(b, pods, func(i int, p pod) error {
				// Each pod's two fronthaul interfaces: one static, one dynamic.
				if r := e.call("ADD", p, "eth0", podConf(ann(i))); r.Error != nil {
					return fmt.Errorf("ADD %s: %s", p.name, r.Error.Msg)
				}
				return nil
			})
			b.StopTimer()
			runAll(b, pods, func(_ int, p pod) error {
				if r := e.call("DEL", p, "eth0", podConf("")); r.Error != nil {
					return fmt.Errorf("DEL %s: %s", p.name, r.Error.Msg)
				}
				return nil
			})
			b.StartTimer()
		}
		b.ReportMetric(float64(benchPods*b.N)/b.Elapsed().Seconds(), "pods/s")
	})
	b.Run("kernel-only", func(b *testing.B) {
		fh, _ := e.agent.networks.Network(context.Background(), "bench", "fronthaul")
		up, _ := e.agent.networks.Network(context.Background(), "bench", "userplane")
		for n := 0; n < b.N; n++ {
			var mu sync.Mutex
			var recs []*attach.Record
			runAll(b, pods, func(i int, p pod) error {
				addrs := []string{fmt.Sprintf("10.20.0.%d/24", static(i)), fmt.Sprintf("10.40.0.%d/24", 2+i), fmt.Sprintf("10.20.0.%d/24", 100+i)}
				for j, ifn := range []string{"net1", "net2", "fh1"} {
					n := fh
					if j == 1 {
						n = up
					}
					req := &attach.Request{ContainerID: p.cid, Netns: p.netns, IfName: ifn, Network: n,
						IPs: []attach.IPConfig{{Address: mustPrefix(addrs[j])}}}
					iface, err := e.kernel.Attach(context.Background(), req)
					if err != nil {
						return err
					}
					mu.Lock()
					recs = append(recs, &attach.Record{Request: *req, Interface: *iface})
					mu.Unlock()
				}
				return nil
			})
			b.StopTimer()
			for _, r := range recs {
				if err := e.kernel.Detach(context.Background(), r); err != nil {
					b.Fatal(err)
				}
			}
			b.StartTimer()
		}
		b.ReportMetric(float64(benchPods*b.N)/b.Elapsed().Seconds(), "pods/s")
	})
}

func runAll(b *testing.B, pods []pod, fn func(int, pod) error) {
	var wg sync.WaitGroup
	errs := make(chan error, len(pods))
	for i, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(i, p); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// BenchmarkAddWithPolicyRules is one pod's ADD (one macvlan interface)
// when a MultiNetworkPolicy selects it, by the number of rules ADD installs
// before it answers (peers × ports; in the pod's netns, host peers go
// into nftables sets);
// DEL is outside the timer. x_open is the time per ADD against the same
// ADD with no policy, run first in the same process.
func BenchmarkAddWithPolicyRules(b *testing.B) {
	e := newEnv(b)
	p := e.pod("guarded")
	conf := podConf(`[{"name":"fronthaul","interface":"fh0","ips":["10.20.0.5/24"]}]`)
	var open float64 // ns per ADD without a policy
	for _, n := range []int{0, 1, 100, 1000} {
		rules := policy.Rules{} // open
		if n > 0 {
			rules = policytest.Ingress(max(n/2, 1), min(n, 2)) // two ports per peer
		}
		e.agent.UsePolicies(fixedPolicies{"guarded": rules})
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			for range b.N {
				if r := e.call("ADD", p, "eth0", conf); r.Error != nil {
					b.Fatalf("ADD: %s", r.Error.Msg)
				}
				b.StopTimer()
				if r := e.call("DEL", p, "eth0", conf); r.Error != nil {
					b.Fatalf("DEL: %s", r.Error.Msg)
				}
				b.StartTimer()
			}
			per := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			if n == 0 {
				open = per
			} else if open > 0 {
				b.ReportMetric(per/open, "x_open")
			}
		})
	}
}
