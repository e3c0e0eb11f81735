package sriov

import (
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/kernelguest"
)

// Every VF of the PF requested at once, plus one: each pod gets its own VF,
// the extra one fails with code 104; then every pod is deleted while as many
// new pods are added at once, so resets race with reallocation: each new pod
// still gets a VF configured for it alone.
func TestConcurrentAttachDetach(t *testing.T) {
	pf := kernelguest.RequireSRIOV(t)
	nvf := min(pf.TotalVFs, 7)
	pf2, hostNames := guestPFHeld(t, pf, nvf)
	p := newPath(t)
	n := &api.Network{Name: "fh", Path: api.PathSRIOV, Master: pf2.Name, VLAN: 10}
	type pod struct {
		ns, id, mac string
		iface       *attach.Interface
		err         error
	}
	mkPods := func(prefix string, k int) []*pod {
		out := make([]*pod, k)
		for i := range out {
			out[i] = &pod{ns: netnstest.New(t), id: fmt.Sprintf("%s%d", prefix, i), mac: fmt.Sprintf("02:00:00:00:%s:%02x", map[string]string{"a": "aa", "b": "bb"}[prefix], i)}
		}
		return out
	}
	req := func(po *pod, i int) *attach.Request {
		return request(n, po.ns, po.id, netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}).String()+"/24", po.mac)
	}
	first := mkPods("a", nvf+1)
	var wg sync.WaitGroup
	start := time.Now()
	for i, po := range first {
		wg.Go(func() { po.iface, po.err = p.Attach(t.Context(), req(po, i)) })
	}
	wg.Wait()
	t.Logf("%d concurrent ADDs on %d VFs in %s", len(first), nvf, time.Since(start).Round(time.Millisecond))
	used := map[int]bool{}
	failed := 0
	for _, po := range first {
		if po.err != nil {
			if attach.CodeOf(po.err) != attach.CodeNoFreeDevice {
				t.Fatalf("pod %s: %v", po.id, po.err)
			}
			failed++
			continue
		}
		vf := stateVFIndex(t, po.iface)
		if used[vf] {
			t.Fatalf("VF %d given twice", vf)
		}
		used[vf] = true
	}
	if failed != 1 || len(used) != nvf {
		t.Fatalf("%d pods failed, %d VFs used; want 1 and %d", failed, len(used), nvf)
	}

	second := mkPods("b", nvf)
	start = time.Now()
	for i, po := range first {
		if po.err != nil {
			continue
		}
		wg.Go(func() {
			if err := p.Detach(t.Context(), &attach.Record{Request: *req(po, i), Interface: *po.iface}); err != nil {
				t.Errorf("DEL %s: %v", po.id, err)
			}
		})
	}
	for i, po := range second {
		wg.Go(func() {
			// Retry while the first pods' VFs are still being reset.
			deadline := time.Now().Add(30 * time.Second)
			for {
				po.iface, po.err = p.Attach(t.Context(), req(po, 100+i))
				if po.err == nil || attach.CodeOf(po.err) != attach.CodeNoFreeDevice || time.Now().After(deadline) {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	t.Logf("%d DELs racing %d ADDs in %s", nvf, nvf, time.Since(start).Round(time.Millisecond))
	link, err := netlink.LinkByName(pf2.Name)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for i, po := range second {
		if po.err != nil {
			t.Fatalf("pod %s: %v", po.id, po.err)
		}
		vf := stateVFIndex(t, po.iface)
		got = append(got, vf)
		info := link.Attrs().Vfs[vf]
		if info.Mac.String() != po.mac || info.Vlan != 10 {
			t.Errorf("pod %s: PF reports VF %d with MAC %s VLAN %d, want %s 10", po.id, vf, info.Mac, info.Vlan, po.mac)
		}
		if err := p.Check(t.Context(), &attach.Record{Request: *req(po, 100+i), Interface: *po.iface}); err != nil {
			t.Errorf("CHECK %s: %v", po.id, err)
		}
	}
	sort.Ints(got)
	t.Logf("second pods hold VFs %v", got)
	for i, po := range second {
		if err := p.Detach(t.Context(), &attach.Record{Request: *req(po, 100+i), Interface: *po.iface}); err != nil {
			t.Fatal(err)
		}
	}
	// Every VF is back on the host under the name it had before any pod.
	for _, po := range second {
		vf := stateVFIndex(t, po.iface)
		l, err := netlink.LinkByName(hostNames[vf])
		if err != nil || l.Attrs().ParentDev != po.iface.State[statePCI] {
			t.Errorf("VF %d not back on the host as %s (%v)", vf, hostNames[vf], err)
		}
	}
}
