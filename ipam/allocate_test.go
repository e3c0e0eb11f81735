package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
)

func openStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func network(t testing.TB, js string) *api.Network {
	t.Helper()
	n, err := api.ParseNetwork([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func alloc(t testing.TB, s *Store, n *api.Network, h Holder, static ...string) ([]attach.IPConfig, error) {
	t.Helper()
	var req []netip.Prefix
	for _, p := range static {
		req = append(req, netip.MustParsePrefix(p))
	}
	var out []attach.IPConfig
	err := s.Update(func(tx *Tx) error {
		var err error
		out, err = tx.Allocate(n, h, req)
		return err
	})
	return out, err
}

func holder(i int) Holder {
	return Holder{ContainerID: fmt.Sprintf("c%04d", i), IfName: "net1", PodNamespace: "ran", PodName: fmt.Sprintf("du-%d", i)}
}

const smallNet = `{"name":"fh","path":"macvlan","master":"m0","ipam":{"subnets":[
	{"cidr":"10.0.0.0/28","rangeStart":"10.0.0.2","rangeEnd":"10.0.0.6","gateway":"10.0.0.1","exclude":["10.0.0.4"]}]}}`

func TestDynamicSkipsGatewayExcludedAndHeld(t *testing.T) {
	s := openStore(t)
	n := network(t, smallNet)
	if _, err := alloc(t, s, n, holder(0), "10.0.0.3/28"); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for i := 1; i <= 3; i++ {
		ips, err := alloc(t, s, n, holder(i))
		if err != nil {
			t.Fatal(err)
		}
		got[ips[0].Address.String()] = true
		if ips[0].Gateway.String() != "10.0.0.1" {
			t.Errorf("gateway %v", ips[0].Gateway)
		}
	}
	for _, want := range []string{"10.0.0.2/28", "10.0.0.5/28", "10.0.0.6/28"} {
		if !got[want] {
			t.Errorf("dynamic allocations %v lack %s", got, want)
		}
	}
	_, err := alloc(t, s, n, holder(4))
	if !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), "10.0.0.2-10.0.0.6") {
		t.Fatalf("full range: got %v", err)
	}
}

func TestStaticConflictNamesHolder(t *testing.T) {
	s := openStore(t)
	n := network(t, smallNet)
	if _, err := alloc(t, s, n, holder(1), "10.0.0.9/28"); err != nil {
		t.Fatal(err)
	}
	_, err := alloc(t, s, n, holder(2), "10.0.0.9/28")
	var ce *ConflictError
	if !errors.As(err, &ce) || !errors.Is(err, ErrAddressInUse) {
		t.Fatalf("want ConflictError, got %v", err)
	}
	for _, want := range []string{"10.0.0.9", "ran/du-1", "container c0001", "interface net1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestStaticRequestsTheNetworkCannotHonour(t *testing.T) {
	s := openStore(t)
	n := network(t, smallNet)
	for req, want := range map[string]string{
		"10.1.0.5/28":  "in none of its subnets",
		"10.0.0.5/24":  "has prefix length /24",
		"10.0.0.1/28":  "gateway",
		"10.0.0.4/28":  "excluded",
		"10.0.0.15/28": "not a usable host address",
		"10.0.0.0/28":  "not a usable host address",
	} {
		_, err := alloc(t, s, n, holder(1), req)
		if !errors.Is(err, ErrInvalidRequest) || !strings.Contains(err.Error(), want) {
			t.Errorf("request %s: got %v, want %q", req, err, want)
		}
	}
}

func TestRetryGetsSameAddressAndReleaseFrees(t *testing.T) {
	s := openStore(t)
	n := network(t, `{"name":"ds","path":"macvlan","master":"m0","ipam":{"subnets":[{"cidr":"10.1.0.0/24"},{"cidr":"fd00:1::/64"}]}}`)
	first, err := alloc(t, s, n, holder(1))
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 2 || !first[0].Address.Addr().Is4() || !first[1].Address.Addr().Is6() {
		t.Fatalf("dual-stack allocation %v", first)
	}
	again, err := alloc(t, s, n, holder(1))
	if err != nil {
		t.Fatal(err)
	}
	if again[0] != first[0] || again[1] != first[1] {
		t.Fatalf("retry got %v, first %v", again, first)
	}
	var freed []netip.Addr
	if err := s.Update(func(tx *Tx) error {
		freed, err = tx.Release(n.Key(), holder(1))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(freed) != 2 {
		t.Fatalf("released %v", freed)
	}
	_ = s.View(func(tx *Tx) error {
		if a := tx.Allocations(); len(a) != 0 {
			t.Errorf("allocations left after release: %v", a)
		}
		return nil
	})
	// A freed address is not immediately reused (stale ARP caches).
	next, err := alloc(t, s, n, holder(2))
	if err != nil {
		t.Fatal(err)
	}
	if next[0].Address == first[0].Address {
		t.Errorf("freed address %v reused at once", first[0].Address)
	}
}

func TestFailedTransactionLeavesNothing(t *testing.T) {
	s := openStore(t)
	n := network(t, smallNet)
	boom := errors.New("attach failed")
	err := s.Update(func(tx *Tx) error {
		if _, err := tx.Allocate(n, holder(1), nil); err != nil {
			return err
		}
		if err := tx.PutRecord("c0001/eth0", map[string]string{"x": "y"}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	_ = s.View(func(tx *Tx) error {
		if len(tx.Allocations()) != 0 || len(tx.RecordKeys()) != 0 {
			t.Errorf("rolled-back transaction left state: %v %v", tx.Allocations(), tx.RecordKeys())
		}
		return nil
	})
}

func TestConcurrentAllocationsAreUnique(t *testing.T) {
	s := openStore(t)
	n := network(t, `{"name":"big","path":"macvlan","master":"m0","ipam":{"subnets":[{"cidr":"10.2.0.0/16"}]}}`)
	const workers, each = 8, 50
	var mu sync.Mutex
	seen := map[netip.Prefix]Holder{}
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				h := holder(w*each + i)
				ips, err := alloc(t, s, n, h)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				if prev, dup := seen[ips[0].Address]; dup {
					errs <- fmt.Errorf("%v given to %v and %v", ips[0].Address, prev, h)
				}
				seen[ips[0].Address] = h
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(seen) != workers*each {
		t.Errorf("got %d addresses, want %d", len(seen), workers*each)
	}
}

func TestStaticRacesExactlyOneWins(t *testing.T) {
	s := openStore(t)
	n := network(t, smallNet)
	var wg sync.WaitGroup
	results := make([]error, 10)
	for i := range results {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, results[i] = alloc(t, s, n, holder(i), "10.0.0.12/28")
		}(i)
	}
	wg.Wait()
	wins := 0
	for _, err := range results {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, ErrAddressInUse):
			t.Errorf("unexpected error %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d winners for one static address", wins)
	}
}

func TestIPv6LargeRangeWithExclusion(t *testing.T) {
	s := openStore(t)
	n := network(t, `{"name":"v6","path":"macvlan","master":"m0","ipam":{"subnets":[{"cidr":"fd00:6::/64","gateway":"fd00:6::1","exclude":["fd00:6::/120"]}]}}`)
	ips, err := alloc(t, s, n, holder(1))
	if err != nil {
		t.Fatal(err)
	}
	if got := ips[0].Address.String(); got != "fd00:6::100/64" {
		t.Errorf("first address after excluded /120 = %s, want fd00:6::100/64", got)
	}
}

// BenchmarkAllocateRelease measures one allocate and one release, each its
// own committed transaction, with 1,000 addresses held. The commit-only
// sub-benchmark runs two empty committed transactions on the same store:
// the ratio of the two is what the IPAM logic costs above bbolt's fsync.
func BenchmarkAllocateRelease(b *testing.B) {
	s := openStore(b)
	n := network(b, `{"name":"bench","path":"macvlan","master":"m0","ipam":{"subnets":[{"cidr":"10.8.0.0/16"}]}}`)
	for i := 0; i < 1000; i++ {
		if _, err := alloc(b, s, n, holder(100000+i)); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("ipam", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			h := holder(i)
			if _, err := alloc(b, s, n, h); err != nil {
				b.Fatal(err)
			}
			if err := s.Update(func(tx *Tx) error { _, err := tx.Release(n.Key(), h); return err }); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("commit-only", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			for j := 0; j < 2; j++ {
				if err := s.Update(func(tx *Tx) error { return tx.PutRecord("bench", i) }); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
