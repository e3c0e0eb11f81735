package vppagent

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestAddDelMemifL2(t *testing.T) {
	f := newFakeVPP()
	m := fakeManager(f, t.TempDir())
	ctx := context.Background()
	spec := PodInterface{ContainerID: cidA, IfName: "fh0", Netns: "/var/run/netns/pod-a", Network: Network{Name: "fh", Kind: KindMemif, Memif: MemifOptions{Queues: 2, RingSize: 2048}}}
	rec, err := m.Add(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	i := f.byTag(spec.Tag())
	if i == nil || !i.up || i.bd != spec.Network.BridgeDomain() {
		t.Fatalf("pod interface %+v: want up, tagged, in bd %d", i, spec.Network.BridgeDomain())
	}
	wantSock := "abstract:telcni-" + cidA[:12] + "-fh0,netns_name=/var/run/netns/pod-a"
	if f.socks[i.sock] != wantSock {
		t.Errorf("socket %q, want %q", f.socks[i.sock], wantSock)
	}
	if rec.DeviceInfo.Memif.Path != "abstract:telcni-"+cidA[:12]+"-fh0" || rec.DeviceInfo.Memif.Role != "client" || rec.DeviceInfo.Memif.Mode != "ethernet" {
		t.Errorf("device-info %+v", rec.DeviceInfo.Memif)
	}
	// A second pod shares the bridge domain; deleting the first keeps it.
	spec2 := spec
	spec2.ContainerID = cidB
	if _, err := m.Add(ctx, spec2); err != nil {
		t.Fatal(err)
	}
	if err := m.Del(ctx, spec.Key()); err != nil {
		t.Fatal(err)
	}
	tags, bds, socks := f.ours()
	if len(tags) != 1 || tags[0] != spec2.Tag() || len(bds) != 1 || len(socks) != 1 {
		t.Fatalf("after first DEL: %v %v %v", tags, bds, socks)
	}
	if err := m.Del(ctx, spec2.Key()); err != nil {
		t.Fatal(err)
	}
	if tags, bds, socks := f.ours(); len(tags)+len(bds)+len(socks) != 0 {
		t.Fatalf("after last DEL: %v %v %v", tags, bds, socks)
	}
	if err := m.Del(ctx, spec2.Key()); err != nil {
		t.Fatalf("second DEL of the same interface: %v", err)
	}
}

func TestAddMemifFileSocketAndVhost(t *testing.T) {
	f := newFakeVPP()
	dir := t.TempDir()
	m := fakeManager(f, dir)
	ctx := context.Background()
	rec, err := m.Add(ctx, PodInterface{ContainerID: cidA, IfName: "up0", Network: Network{Name: "up", Kind: KindMemif, L3: true, Memif: MemifOptions{Socket: SocketFile, Mode: MemifModeIP}},
		IPs: []netip.Prefix{pfx("10.1.0.5/24")}, Gateways: []netip.Addr{mustAddr("10.1.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	want := dir + "/run/memif/" + cidA[:12] + "-up0.sock"
	if rec.Socket != want || rec.DeviceInfo.Memif.Path != want || rec.DeviceInfo.Memif.Mode != "ip" {
		t.Errorf("file socket %q / %+v, want %s", rec.Socket, rec.DeviceInfo.Memif, want)
	}
	vr, err := m.Add(ctx, PodInterface{ContainerID: cidA, IfName: "vh0", Network: Network{Name: "vh", Kind: KindVhostUser}})
	if err != nil {
		t.Fatal(err)
	}
	if vr.DeviceInfo.Type != "vhost-user" || vr.DeviceInfo.Vhost.Mode != "client" || len(vr.Socket) >= 108 {
		t.Errorf("vhost-user device-info %+v socket %q", vr.DeviceInfo.Vhost, vr.Socket)
	}
	if i := f.byTag(vr.Spec.Tag()); i == nil || !strings.HasPrefix(i.name, "VirtualEthernet") {
		t.Errorf("vhost-user interface not tagged: %+v", i)
	}
	cl, err := m.Add(ctx, PodInterface{ContainerID: cidB, IfName: "vh0", Network: Network{Name: "vh", Kind: KindVhostUser, Vhost: VhostOptions{Mode: "client"}}})
	if err != nil {
		t.Fatal(err)
	}
	if cl.DeviceInfo.Vhost.Mode != "server" {
		t.Errorf("VPP as vhost-user client: pod mode %q, want server", cl.DeviceInfo.Vhost.Mode)
	}
}

func TestAddL3RoutesAndProxiesGateway(t *testing.T) {
	f := newFakeVPP()
	m := fakeManager(f, t.TempDir())
	ctx := context.Background()
	n := Network{Name: "n3", Kind: KindMemif, L3: true, Table: 7}
	spec := PodInterface{ContainerID: cidA, IfName: "n0", Netns: "/proc/1/ns/net", Network: n,
		IPs: []netip.Prefix{pfx("10.3.0.5/24"), pfx("fd00:3::5/64")}, Gateways: []netip.Addr{mustAddr("10.3.0.1"), mustAddr("fd00:3::1")}}
	if _, err := m.Add(ctx, spec); err != nil {
		t.Fatal(err)
	}
	pod := f.byTag(spec.Tag())
	loop := f.byTag(netTag("n3"))
	if pod == nil || loop == nil {
		t.Fatal("pod interface or network loopback missing")
	}
	var podIdx, loopIdx uint32
	for idx, i := range f.ifs {
		switch i {
		case pod:
			podIdx = idx
		case loop:
			loopIdx = idx
		}
	}
	if pod.unnumTo != loopIdx || pod.table != 7 || !pod.up || pod.bd != 0 {
		t.Errorf("pod interface %+v: want unnumbered to %d in table 7, up, no bridge", pod, loopIdx)
	}
	if !strings.Contains(strings.Join(loop.addrs, " "), "10.3.0.1/32") {
		t.Errorf("loopback addresses %v, want the gateway /32", loop.addrs)
	}
	if f.routes["7/10.3.0.5/32"] != podIdx || f.routes["7/fd00:3::5/128"] != podIdx {
		t.Errorf("routes %v, want /32 and /128 via %d", f.routes, podIdx)
	}
	if !f.proxy["arp 7 10.3.0.1"] || !f.proxy["nd "+itoa(podIdx)+" fd00:3::1"] {
		t.Errorf("proxies %v, want ARP for 10.3.0.1 and ND for fd00:3::1", f.proxy)
	}
	if err := m.Del(ctx, spec.Key()); err != nil {
		t.Fatal(err)
	}
	if len(f.routes) != 0 {
		t.Errorf("routes left after DEL: %v", f.routes)
	}
	if f.proxy["arp 7 10.3.0.1"] {
		t.Errorf("proxy ARP for the gateway left after the network's last DEL: %v", f.proxy)
	}
	if tags, _, _ := f.ours(); len(tags) != 0 {
		t.Errorf("objects left after DEL: %v", tags)
	}
	// L3 without a gateway cannot answer the pod's ARP: refused, nothing left.
	spec.Gateways = nil
	if _, err := m.Add(ctx, spec); err == nil || !strings.Contains(err.Error(), "gateway") {
		t.Errorf("L3 ADD without gateway: %v", err)
	}
	if tags, _, socks := f.ours(); len(tags)+len(socks) != 0 {
		t.Errorf("failed ADD left %v %v", tags, socks)
	}
}

func TestVLANUplinkSubinterface(t *testing.T) {
	f := newFakeVPP()
	m := fakeManager(f, t.TempDir())
	ctx := context.Background()
	up := &Uplink{Kind: UplinkAFPacket, Name: "veth-up"}
	a := PodInterface{ContainerID: cidA, IfName: "v0", Netns: "/proc/1/ns/net", Network: Network{Name: "v100", Kind: KindMemif, Uplink: up, VLAN: 100}}
	b := PodInterface{ContainerID: cidA, IfName: "v1", Netns: "/proc/1/ns/net", Network: Network{Name: "v200", Kind: KindMemif, Uplink: up, VLAN: 200}}
	for _, s := range []PodInterface{a, b} {
		if _, err := m.Add(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	upIf := f.byTag(uplinkTag(up))
	sub := f.byTag(netTag("v100"))
	if upIf == nil || upIf.name != "host-veth-up" || !upIf.up {
		t.Fatalf("uplink %+v", upIf)
	}
	if sub == nil || sub.name != "host-veth-up.100" || sub.vtr != vtrPop1 || sub.bd != a.Network.BridgeDomain() || !sub.up {
		t.Fatalf("vlan sub-interface %+v: want pop-1, in bd %d, up", sub, a.Network.BridgeDomain())
	}
	if err := m.Del(ctx, a.Key()); err != nil {
		t.Fatal(err)
	}
	if f.byTag(netTag("v100")) != nil || f.byTag(uplinkTag(up)) == nil {
		t.Error("want the v100 sub-interface gone and the shared uplink kept")
	}
	if err := m.Del(ctx, b.Key()); err != nil {
		t.Fatal(err)
	}
	if tags, bds, _ := f.ours(); len(tags)+len(bds) != 0 {
		t.Errorf("left after last DEL: %v %v", tags, bds)
	}
}

func TestReconcileRecreatesAndCollects(t *testing.T) {
	dir := t.TempDir()
	f := newFakeVPP()
	m := fakeManager(f, dir)
	ctx := context.Background()
	spec := PodInterface{ContainerID: cidA, IfName: "fh0", Netns: "/proc/1/ns/net", Network: Network{Name: "fh", Kind: KindMemif}}
	if _, err := m.Add(ctx, spec); err != nil {
		t.Fatal(err)
	}
	// VPP restarts empty (and the agent with it): reconcile re-creates
	// from the agent's records.
	f2 := newFakeVPP()
	f2.next = 40
	m2 := fakeManager(f2, dir, spec)
	if i := f2.byTag(spec.Tag()); i == nil || !i.up || i.bd != spec.Network.BridgeDomain() {
		t.Fatalf("after VPP restart: %+v", i)
	}
	recs := m2.Records()
	if len(recs) != 1 || recs[0].SwIfIndex < 40 {
		t.Errorf("record not updated with the new sw_if_index: %+v", recs)
	}
	// Orphans: an interface, bridge domain and socket tagged telcni that no
	// record owns (made by a Manager whose agent then forgot them); a
	// foreign tagged interface stays.
	orphan := PodInterface{ContainerID: cidB, IfName: "x0", Netns: "/proc/1/ns/net", Network: Network{Name: "gone", Kind: KindMemif}}
	if _, err := fakeManager(f2, dir).Add(ctx, orphan); err != nil {
		t.Fatal(err)
	}
	f2.mu.Lock()
	_, foreign := f2.newIf("loop99")
	foreign.tag = "not-telcni"
	f2.mu.Unlock()
	if err := m2.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	tags, bds, socks := f2.ours()
	if len(tags) != 1 || tags[0] != spec.Tag() || len(bds) != 1 || len(socks) != 1 {
		t.Errorf("after reconcile: %v %v %v, want only %s", tags, bds, socks, spec.Tag())
	}
	if f2.byTag("not-telcni") == nil {
		t.Error("reconcile removed a foreign interface")
	}
}

func TestDelWhileVPPDownDropsRecord(t *testing.T) {
	dir := t.TempDir()
	f := newFakeVPP()
	m := fakeManager(f, dir)
	ctx := context.Background()
	spec := PodInterface{ContainerID: cidA, IfName: "fh0", Netns: "/proc/1/ns/net", Network: Network{Name: "fh", Kind: KindMemif}}
	if _, err := m.Add(ctx, spec); err != nil {
		t.Fatal(err)
	}
	m.conn.setState(nil, nil, "", nil, os.ErrNotExist)
	if err := m.Del(ctx, spec.Key()); err != nil {
		t.Fatalf("DEL with VPP down: %v", err)
	}
	if recs := m.Records(); len(recs) != 0 {
		t.Errorf("records after DEL: %v", recs)
	}
	// VPP comes back with the leftovers: reconcile removes them.
	m.conn.setState(f, nil, "fake", nil, nil)
	if err := m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if tags, bds, socks := f.ours(); len(tags)+len(bds)+len(socks) != 0 {
		t.Errorf("left after reconcile: %v %v %v", tags, bds, socks)
	}
}

func itoa(u uint32) string { return strconv.FormatUint(uint64(u), 10) }

func TestAddReusesARegisteredSocket(t *testing.T) {
	f := newFakeVPP()
	m := fakeManager(f, t.TempDir())
	spec := PodInterface{ContainerID: cidA, IfName: "fh0", Netns: "/var/run/netns/pod-a", Network: Network{Name: "fh", Kind: KindMemif}}
	sock, _ := spec.memifSocket(m.runDir)
	f.socks[5] = sock // left by an attempt that died after registering it
	if _, err := m.Add(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	if i := f.byTag(spec.Tag()); i == nil || i.sock != 5 {
		t.Fatalf("memif %+v, want it on the registered socket 5", i)
	}
	if _, _, socks := f.ours(); len(socks) != 1 {
		t.Errorf("sockets %v, want the one", socks)
	}
}

func TestReconcileRepairsDrift(t *testing.T) {
	f := newFakeVPP()
	m := fakeManager(f, t.TempDir())
	ctx := context.Background()
	spec := PodInterface{ContainerID: cidA, IfName: "fh0", Netns: "/proc/1/ns/net", Network: Network{Name: "fh", Kind: KindMemif}}
	if _, err := m.Add(ctx, spec); err != nil {
		t.Fatal(err)
	}
	i := f.byTag(spec.Tag())
	f.mu.Lock()
	i.up, i.bd = false, 0 // someone at the VPP CLI
	f.mu.Unlock()
	if err := m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if !i.up || i.bd != spec.Network.BridgeDomain() {
		t.Errorf("after reconcile: %+v, want up in bd %d", i, spec.Network.BridgeDomain())
	}
}

func TestReconcileOfHealthyL3IsHarmless(t *testing.T) {
	f := newFakeVPP()
	m := fakeManager(f, t.TempDir())
	ctx := context.Background()
	spec := PodInterface{ContainerID: cidA, IfName: "r0", Netns: "/proc/1/ns/net", Network: Network{Name: "r", Kind: KindMemif, L3: true, Table: 3},
		IPs: []netip.Prefix{pfx("10.5.0.5/24"), pfx("fd00:5::5/64")}, Gateways: []netip.Addr{mustAddr("10.5.0.1"), mustAddr("fd00:5::1")}}
	if _, err := m.Add(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if err := m.Reconcile(ctx); err != nil {
		t.Fatalf("reconcile of a healthy L3 network: %v", err)
	}
}

func TestOwnedUplinkLeavesBridgeDomain(t *testing.T) {
	f := newFakeVPP()
	f.mu.Lock()
	vf, _ := f.newIf("vf0") // VPP owns it from startup.conf
	f.mu.Unlock()
	m := fakeManager(f, t.TempDir())
	ctx := context.Background()
	spec := PodInterface{ContainerID: cidA, IfName: "fh0", Netns: "/proc/1/ns/net", Network: Network{Name: "fh", Kind: KindMemif, Uplink: &Uplink{Kind: UplinkDPDK, Name: "vf0"}}}
	if _, err := m.Add(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if f.ifs[vf].bd != spec.Network.BridgeDomain() || f.ifs[vf].tag != "" {
		t.Fatalf("owned uplink %+v: want in the bridge domain and untagged", f.ifs[vf])
	}
	if err := m.Del(ctx, spec.Key()); err != nil {
		t.Fatal(err)
	}
	if i, ok := f.ifs[vf]; !ok || i.bd != 0 {
		t.Errorf("owned uplink after the last DEL: %+v (present %v), want kept and out of the bridge domain", i, ok)
	}
	if _, bds, _ := f.ours(); len(bds) != 0 {
		t.Errorf("bridge domains left: %v", bds)
	}
}

// An ADD whose caller gives up half-way (its CNI call timed out, the
// plugin was killed) leaves nothing in VPP: whatever request the caller's
// context ends at, the bridge domain, the memif socket and the interface
// made before it are removed, though the context that made them is done.
func TestAddAbandonedByCallerLeavesNothing(t *testing.T) {
	spec := PodInterface{ContainerID: cidA, IfName: "fh0", Netns: "/var/run/netns/pod-a", Network: Network{Name: "fh", Kind: KindMemif}}
	// The requests of one whole ADD, counted on a run nobody abandons.
	f := newFakeVPP()
	m := fakeManager(f, t.TempDir())
	requests := 0
	f.before = func(any) { requests++ }
	if _, err := m.Add(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	if requests < 5 {
		t.Fatalf("a whole ADD made %d requests; the test needs its steps", requests)
	}
	for k := 1; k <= requests; k++ {
		f := newFakeVPP()
		m := fakeManager(f, t.TempDir())
		ctx, cancel := context.WithCancel(context.Background())
		n := 0
		f.before = func(any) {
			if n++; n == k {
				cancel()
			}
		}
		_, err := m.Add(ctx, spec)
		cancel()
		if err == nil {
			t.Fatalf("caller gone at request %d of %d: ADD succeeded", k, requests)
		}
		tags, bds, socks := f.ours()
		if len(tags)+len(bds)+len(socks) != 0 || len(f.ifs) != 1 || len(f.socks) != 1 {
			t.Errorf("caller gone at request %d of %d: left tagged %v, bridge domains %v, sockets %v; %d interfaces, %d sockets in all",
				k, requests, tags, bds, socks, len(f.ifs), len(f.socks))
		}
	}
}

// An agent killed between creating a memif interface and tagging it leaves
// an interface only its socket's name ties to telcni. The restarted agent's
// reconcile removes both (VPP refuses to delete a socket in use).
func TestReconcileRemovesUntaggedMemifOnOwnSocket(t *testing.T) {
	f := newFakeVPP()
	dir := t.TempDir()
	spec := PodInterface{ContainerID: cidA, IfName: "fh0", Netns: "/var/run/netns/pod-a", Network: Network{Name: "fh", Kind: KindMemif}}
	v := &vpp{conn: f}
	ctx := context.Background()
	sock, _ := spec.memifSocket(dir + "/run")
	sid, err := v.memifSocketAdd(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.memifCreate(ctx, sid, 0, spec.Network.Memif); err != nil {
		t.Fatal(err)
	}
	// Not ours: a socket and memif another application made.
	other, _ := v.memifSocketAdd(ctx, "/run/other/app.sock")
	if _, err := v.memifCreate(ctx, other, 0, spec.Network.Memif); err != nil {
		t.Fatal(err)
	}
	fakeManager(f, dir) // restarted with no records: Retain reconciles
	if len(f.ifs) != 2 || len(f.socks) != 2 {
		t.Fatalf("after reconcile: %d interfaces, sockets %v; want local0 and the other application's memif on its socket", len(f.ifs), f.socks)
	}
	if f.socks[other] != "/run/other/app.sock" {
		t.Fatalf("the other application's socket went: %v", f.socks)
	}
}

// A DEL that VPP fails under (it died mid-call, before the connection is
// known lost) drops the record all the same: the agent frees its own and
// never sends that DEL again, and a record kept here kept the network's
// bridge domain wanted forever (the soak's leak). What is left is owed a
// reconcile, which removes it.
func TestDelFailingInVPPLeavesNoRecord(t *testing.T) {
	f := newFakeVPP()
	m := fakeManager(f, t.TempDir())
	ctx := context.Background()
	spec := PodInterface{ContainerID: cidA, IfName: "fh0", Netns: "/var/run/netns/pod-a", Network: Network{Name: "fh", Kind: KindMemif}}
	if _, err := m.Add(ctx, spec); err != nil {
		t.Fatal(err)
	}
	f.fail = func(any) error { return errors.New("write unix @->api.sock: write: broken pipe") }
	if err := m.Del(ctx, spec.Key()); err == nil {
		t.Fatal("DEL succeeded though every VPP call failed")
	}
	if n := len(m.Records()); n != 0 {
		t.Fatalf("%d records after a failed DEL: the agent never retries it", n)
	}
	if !m.owed.Load() {
		t.Fatal("a DEL that left objects in VPP owes no reconcile")
	}
	f.fail = nil
	if err := m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if tags, bds, socks := f.ours(); len(tags)+len(bds)+len(socks) != 0 {
		t.Fatalf("after the owed reconcile: %v %v %v", tags, bds, socks)
	}
}
