package vppagent

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"go.fd.io/govpp/api"

	tapi "github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
)

// fakeLender is the VF pool as vppagent sees it (attach.VFLender): PFs
// with VF PCI addresses, which VF each network holds, and whether VPP
// still has one open (busy: ReturnUplink refuses, as sriov does for a VF
// whose vfio group is open).
type fakeLender struct {
	mu       sync.Mutex
	pfs      map[string][]string
	held     map[string]attach.UplinkVF // by network
	busy     map[string]bool            // by PCI
	takes    int
	returns  []string // networks, in order
	retained []attach.UplinkVF
}

const cidC = "2a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"

func newFakeLender() *fakeLender {
	return &fakeLender{pfs: map[string][]string{"ens1f0": {"0000:01:10.0", "0000:01:10.2"}},
		held: map[string]attach.UplinkVF{}, busy: map[string]bool{}}
}

func (l *fakeLender) TakeForUplink(_ context.Context, network, pf, bindAs string, adopt func(string) bool) (attach.UplinkVF, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h, ok := l.held[network]; ok {
		return h, nil
	}
	vfs, ok := l.pfs[pf]
	if !ok {
		return attach.UplinkVF{}, attach.Errorf(attach.CodeInvalidConfig, "PF %s: no such netdev with a PCI device", pf)
	}
	free := func(pci string) bool {
		for _, h := range l.held {
			if h.PCI == pci {
				return false
			}
		}
		return true
	}
	for i, pci := range vfs {
		if adopt != nil && adopt(pci) && free(pci) {
			l.takes++
			u := attach.UplinkVF{Network: network, PF: pf, VF: i, PCI: pci, Driver: "iavf", BindAs: "vfio-pci", Adopted: true}
			l.held[network] = u
			return u, nil
		}
	}
	for i, pci := range vfs {
		if !free(pci) || l.busy[pci] {
			continue
		}
		l.takes++
		u := attach.UplinkVF{Network: network, PF: pf, VF: i, PCI: pci, Driver: "iavf", HostName: fmt.Sprintf("%sv%d", pf, i), BindAs: bindAs}
		l.held[network] = u
		return u, nil
	}
	return attach.UplinkVF{}, attach.Errorf(attach.CodeNoFreeDevice, "no free VF on PF %s (all %d taken)", pf, len(vfs))
}

func (l *fakeLender) ReturnUplink(_ context.Context, network string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	h, ok := l.held[network]
	if !ok {
		return nil
	}
	if l.busy[h.PCI] && !h.Adopted {
		return fmt.Errorf("VF %s is still open through /dev/vfio/7 (VPP holds it)", h.PCI)
	}
	delete(l.held, network)
	l.returns = append(l.returns, network)
	return nil
}

func (l *fakeLender) RetainUplinks(leases []attach.UplinkVF) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.retained = append([]attach.UplinkVF(nil), leases...)
	l.held = map[string]attach.UplinkVF{}
	for _, u := range leases {
		l.held[u.Network] = u
	}
}

func (l *fakeLender) holds(network string) (attach.UplinkVF, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h, ok := l.held[network]
	return h, ok
}

func lenderManager(f *fakeVPP, dir string, l attach.VFLender) *Manager {
	m, _ := NewManager(Config{RunDir: dir + "/run", VFs: l})
	m.conn.setState(f, nil, "fake", nil, nil)
	return m
}

// attachReq is an agent's request for a memif on network n.
func attachReq(cid, ifname string, n *tapi.Network) *attach.Request {
	return &attach.Request{ContainerID: cid, IfName: ifname, Netns: "/proc/1/ns/net", Network: n}
}

func poolNetwork(t *testing.T, kind string) *tapi.Network {
	t.Helper()
	n, err := tapi.ParseNetwork([]byte(`{"name":"up","path":"memif","vpp":{"uplink":{"kind":"` + kind + `","pf":"ens1f0"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// An avf uplink from the pool: the first pod's ADD borrows a VF and VPP
// makes the avf interface on its PCI address; every pod's record keeps the
// lease; after an agent restart the records give the lender its lease
// back and VPP's interface is kept; the last DEL deletes the avf
// interface, then returns the VF.
func TestUplinkAVFFromPoolFollowsPods(t *testing.T) {
	f := newFakeVPP()
	dir := t.TempDir()
	lend := newFakeLender()
	p := NewPath(lenderManager(f, dir, lend))
	if err := p.Retain(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	n := poolNetwork(t, "avf")
	var recs []*attach.Record
	for _, cid := range []string{cidA, cidB} {
		req := attachReq(cid, "up0", n)
		iface, err := p.Attach(ctx, req)
		if err != nil {
			t.Fatalf("ADD %s: %v", cid, err)
		}
		l, ok := attach.UplinkVFFromState(n.Key(), iface.State)
		if !ok || l.PCI != "0000:01:10.0" || l.PF != "ens1f0" || l.Driver != "iavf" || l.BindAs != "vfio-pci" {
			t.Fatalf("ADD %s: state %v: want the lease of VF 0000:01:10.0", cid, iface.State)
		}
		recs = append(recs, &attach.Record{Request: *req, Interface: *iface})
	}
	if lend.takes != 1 {
		t.Fatalf("VFs taken for one network: %d, want 1", lend.takes)
	}
	up := f.byTag(tagPrefix + "uplink:avf:0000:01:10.0")
	if up == nil || up.name != "avf-0/1/10/0" || !up.up || up.bd != bdOf(n) {
		t.Fatalf("avf uplink %+v: want avf-0/1/10/0, up, in the network's bridge domain", up)
	}

	// Agent restart: a new Manager and an empty pool learn the lease from
	// the records; reconcile keeps the avf interface.
	lend2 := newFakeLender()
	p = NewPath(lenderManager(f, dir, lend2))
	if err := p.Retain(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if h, ok := lend2.holds(n.Key()); !ok || h.PCI != "0000:01:10.0" || h.Driver != "iavf" || h.HostName != "ens1f0v0" {
		t.Fatalf("after restart the pool holds %+v (%v), want VF 0000:01:10.0 for %s", h, ok, n.Key())
	}
	if f.byTag(tagPrefix+"uplink:avf:0000:01:10.0") == nil {
		t.Fatal("reconcile after restart deleted the avf uplink its records use")
	}
	// A third pod after the restart uses the same VF; no new lease.
	if _, err := p.Attach(ctx, attachReq(cidC, "up0", n)); err != nil {
		t.Fatal(err)
	}
	if lend2.takes != 0 {
		t.Fatalf("a pod after the restart took %d more VFs", lend2.takes)
	}
	recs = append(recs, &attach.Record{Request: *attachReq(cidC, "up0", n)})
	for i, r := range recs {
		if err := p.Detach(ctx, r); err != nil {
			t.Fatal(err)
		}
		_, held := lend2.holds(n.Key())
		if last := i == len(recs)-1; held == last {
			t.Fatalf("after DEL %d of %d the VF is held: %v", i+1, len(recs), held)
		}
	}
	if f.byTag(tagPrefix+"uplink:avf:0000:01:10.0") != nil {
		t.Fatal("avf uplink left after the last DEL")
	}
	if tags, bds, _ := f.ours(); len(tags)+len(bds) != 0 {
		t.Fatalf("left in VPP: %v %v", tags, bds)
	}
	// The avf interface went before the VF did.
	calls := strings.Join(f.calls, " ")
	if !strings.Contains(calls, "avf_delete") || len(lend2.returns) != 1 {
		t.Fatalf("calls %s; returns %v", calls, lend2.returns)
	}
}

// avf_create refused (VPP cannot open the VF): the error is VPP's,
// surfaced with the network; nothing is left in VPP and the VF goes back.
// The pool's own refusals name vpp.uplink.pf with their CNI codes.
func TestUplinkFromPoolFailures(t *testing.T) {
	f := newFakeVPP()
	lend := newFakeLender()
	p := NewPath(lenderManager(f, t.TempDir(), lend))
	_ = p.Retain(context.Background(), nil)
	ctx := context.Background()
	n := poolNetwork(t, "avf")

	f.avfRefuse = int32(api.INVALID_INTERFACE)
	_, err := p.Attach(ctx, attachReq(cidA, "up0", n))
	if err == nil || !strings.Contains(err.Error(), "create avf on 0000:01:10.0") {
		t.Fatalf("ADD with avf_create refused: %v", err)
	}
	t.Logf("avf_create refused: %v", err)
	if tags, bds, _ := f.ours(); len(tags)+len(bds) != 0 {
		t.Fatalf("left in VPP after the failed ADD: %v %v", tags, bds)
	}
	if _, held := lend.holds(n.Key()); held || len(lend.returns) != 1 {
		t.Fatalf("VF held %v after the failed ADD (returns %v)", held, lend.returns)
	}
	f.avfRefuse = 0

	bad := poolNetwork(t, "avf")
	bad.VPP.Uplink.PF = "ens9"
	_, err = p.Attach(ctx, attachReq(cidA, "up0", bad))
	if attach.CodeOf(err) != attach.CodeInvalidConfig || !strings.Contains(err.Error(), "vpp.uplink.pf ens9") {
		t.Fatalf("unknown PF: code %d %v", attach.CodeOf(err), err)
	}
	// Two networks take both VFs; a third finds none.
	for i, name := range []string{"a", "b", "c"} {
		m := poolNetwork(t, "avf")
		m.Name = name
		_, err := p.Attach(ctx, attachReq(cidA, "n"+name, m))
		if i < 2 && err != nil {
			t.Fatal(err)
		}
		if i == 2 && (attach.CodeOf(err) != attach.CodeNoFreeDevice || !strings.Contains(err.Error(), "vpp.uplink.pf ens1f0: no free VF")) {
			t.Fatalf("third network: code %d %v", attach.CodeOf(err), err)
		}
		if i == 2 {
			t.Logf("no free VF: code %d %v", attach.CodeOf(err), err)
		}
	}

	// No pool on this agent.
	m := lenderManager(f, t.TempDir(), nil)
	_ = m.Retain(ctx, nil)
	_, err = NewPath(m).Attach(ctx, attachReq(cidB, "up0", n))
	if attach.CodeOf(err) != attach.CodeInvalidConfig || !strings.Contains(err.Error(), "vpp.uplink.pf ens1f0") {
		t.Fatalf("pool uplink without a pool: code %d %v", attach.CodeOf(err), err)
	}
}

// dpdk-vf: VPP's DPDK plugin has a VF of the PF from startup.conf (and
// holds it open); the agent adopts that one, finds its interface by PCI
// address and joins it to the bridge domain. At the last DEL it leaves the
// bridge domain and stays in VPP, and the VF is released as it is. Without
// such an interface in VPP, ADD fails saying what to put in startup.conf,
// and the VF it was lent goes back.
func TestUplinkDPDKVFFromPool(t *testing.T) {
	f := newFakeVPP()
	lend := newFakeLender()
	m := lenderManager(f, t.TempDir(), lend)
	p := NewPath(m)
	_ = p.Retain(context.Background(), nil)
	ctx := context.Background()
	n := poolNetwork(t, "dpdk-vf")

	_, err := p.Attach(ctx, attachReq(cidA, "up0", n))
	if err == nil || !strings.Contains(err.Error(), "dpdk { dev 0000:01:10.0 }") {
		t.Fatalf("ADD without the VF in VPP: %v", err)
	}
	t.Logf("dpdk-vf not in VPP: %v", err)
	if _, held := lend.holds(n.Key()); held {
		t.Fatal("VF still held after the failed ADD")
	}

	f.mu.Lock()
	idx, _ := f.newIf("VirtualFunctionEthernet1/10/2") // VF 1 of ens1f0, from startup.conf
	f.mu.Unlock()
	lend.busy["0000:01:10.2"] = true // VPP's DPDK has it open
	req := attachReq(cidA, "up0", n)
	iface, err := p.Attach(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if l, ok := attach.UplinkVFFromState(n.Key(), iface.State); !ok || l.PCI != "0000:01:10.2" || !l.Adopted {
		t.Fatalf("lease %+v in the record: want VF 0000:01:10.2, adopted", l)
	}
	if i := f.ifs[idx]; i.bd != bdOf(n) || !i.up || i.tag != "" {
		t.Fatalf("dpdk-vf interface %+v: want up, untagged, in the bridge domain", i)
	}
	if err := p.Detach(ctx, &attach.Record{Request: *req, Interface: *iface}); err != nil {
		t.Fatal(err)
	}
	if i, ok := f.ifs[idx]; !ok || i.bd != 0 {
		t.Fatalf("dpdk-vf interface after the last DEL: %+v %v, want kept, out of the bridge domain", i, ok)
	}
	if _, held := lend.holds(n.Key()); held {
		t.Fatal("adopted VF not released at the last DEL")
	}
}

// avf: a VF VPP holds open (busy) is not returned at the last DEL: it
// stays lent, and a later reconcile returns it once VPP has let go.
func TestUplinkAVFReturnWaitsForVPP(t *testing.T) {
	f := newFakeVPP()
	lend := newFakeLender()
	m := lenderManager(f, t.TempDir(), lend)
	p := NewPath(m)
	_ = p.Retain(context.Background(), nil)
	ctx := context.Background()
	n := poolNetwork(t, "avf")
	req := attachReq(cidA, "up0", n)
	iface, err := p.Attach(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	lend.busy["0000:01:10.0"] = true
	if err := p.Detach(ctx, &attach.Record{Request: *req, Interface: *iface}); err != nil {
		t.Fatal(err)
	}
	if _, held := lend.holds(n.Key()); !held {
		t.Fatal("a VF VPP holds open was returned")
	}
	lend.busy["0000:01:10.0"] = false
	if err := m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if _, held := lend.holds(n.Key()); held {
		t.Fatal("VF not returned by the reconcile after VPP let it go")
	}
}

func TestDPDKByPCI(t *testing.T) {
	st := &state{ifs: []swIf{{Index: 1, Name: "VirtualFunctionEthernetba/0/0"}, {Index: 2, Name: "VirtualFunctionEthernet1/10/2"},
		{Index: 3, Name: "GigabitEthernet1/10/2.100"}, {Index: 4, Name: "TenGigabitEthernet1/2/3/4"}, {Index: 5, Name: "VirtualFunctionEthernet0/1/16/3"}}}
	for pci, want := range map[string]uint32{
		"0000:ba:00.0": 1, "0000:01:10.2": 2, "0001:02:03.4": 4, "0000:0a:00.0": 0, "0000:01:10.3": 0, "bogus": 0,
	} {
		i, ok := st.dpdkByPCI(pci)
		if (want == 0) == ok || (ok && i.Index != want) {
			t.Errorf("dpdkByPCI(%s) = %d %v, want %d", pci, i.Index, ok, want)
		}
	}
	if err := (&Network{Name: "x", Kind: KindMemif, Uplink: &Uplink{Kind: UplinkDPDKVF}}).Validate(); err == nil || !strings.Contains(err.Error(), "needs a pf") {
		t.Errorf("dpdk-vf without pf: %v", err)
	}
}

func bdOf(n *tapi.Network) uint32 {
	vn := NetworkFromAPI(n)
	return vn.BridgeDomain()
}
