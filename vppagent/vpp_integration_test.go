package vppagent

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/vppagent/vpptest"
)

const (
	cidA = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"
	cidB = "1a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"
)

func l2Net() Network { return Network{Name: "fronthaul", Kind: KindMemif} }

// telcniObjects lists the telcni-tagged interfaces and bridge domains VPP has.
func telcniObjects(t testing.TB, a *testAgent) (ifs []string, bds []uint32) {
	t.Helper()
	c, err := a.m.conn.API()
	if err != nil {
		t.Fatal(err)
	}
	v := &vpp{conn: c}
	ctx := context.Background()
	all, err := v.dumpInterfaces(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range all {
		if isOurs(i.Tag) {
			ifs = append(ifs, i.Tag)
		}
	}
	bm, err := v.bridgeDomains(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for id, tag := range bm {
		if isOurs(tag) {
			bds = append(bds, id)
		}
	}
	return ifs, bds
}

func TestVPPConnectsAndChecksCRCs(t *testing.T) {
	v := vpptest.Start(t, vpptest.Options{})
	a := startAgent(t, v, nil, shortTemp(t))
	if ver := a.m.Conn().Version(); !strings.HasPrefix(ver, "25.10") {
		t.Errorf("VPP version %q, want 25.10", ver)
	}
}

func TestVPPMemifL2TwoPodsPing(t *testing.T) {
	v := vpptest.Start(t, vpptest.Options{})
	a := startAgent(t, v, nil, shortTemp(t))
	ctx := context.Background()
	nsA, nsB := newNetns(t), newNetns(t)
	ra, err := a.m.Add(ctx, PodInterface{ContainerID: cidA, IfName: "fh0", Netns: nsA, Network: l2Net(), IPs: []netip.Prefix{pfx("10.9.0.1/24")}})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := a.m.Add(ctx, PodInterface{ContainerID: cidB, IfName: "fh0", Netns: nsB, Network: l2Net(), IPs: []netip.Prefix{pfx("10.9.0.2/24")}})
	if err != nil {
		t.Fatal(err)
	}
	if ra.DeviceInfo.Type != "memif" || !strings.HasPrefix(ra.DeviceInfo.Memif.Path, "abstract:") {
		t.Errorf("device-info %+v, want memif on an abstract socket", ra.DeviceInfo)
	}
	out := v.MustCLI("show interface")
	for _, r := range []*Record{ra, rb} {
		if !strings.Contains(v.MustCLI("show interface "+ifName(t, a, r)+" addr"), "L2 bridge bd-id") {
			t.Errorf("%s not in a bridge domain:\n%s", r.Spec.Tag(), out)
		}
	}
	ifs, _ := telcniObjects(t, a)
	if len(ifs) != 2 || !contains(ifs, ra.Spec.Tag()) || !contains(ifs, rb.Spec.Tag()) {
		t.Errorf("tagged interfaces %v, want the two pod tags", ifs)
	}
	p := startPods(t)
	pa := p.add(ra, "02:00:00:00:00:0a")
	pb := p.add(rb, "02:00:00:00:00:0b")
	mustPing(t, pa, pb.ip, pb.ip, 1, 10*time.Second)
	mustPing(t, pb, pa.ip, pa.ip, 2, 10*time.Second)

	cs, err := a.m.PodCounters()
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 || cs[0].RxPackets == 0 || cs[0].TxPackets == 0 {
		t.Errorf("pod counters %+v, want rx and tx on both", cs)
	}
	var sb strings.Builder
	if err := WritePrometheus(&sb, cs); err != nil || !strings.Contains(sb.String(), `telcni_vpp_pod_rx_packets_total{container_id="`+cidA) {
		t.Errorf("metrics: %v\n%s", err, sb.String())
	}

	for _, r := range []*Record{ra, rb} {
		if err := a.m.Del(ctx, r.Spec.Key()); err != nil {
			t.Fatal(err)
		}
	}
	ifs, bds := telcniObjects(t, a)
	if len(ifs)+len(bds) != 0 {
		t.Errorf("after DEL VPP still has %v %v", ifs, bds)
	}
	if s := v.MustCLI("show memif"); strings.Contains(s, "telcni-") {
		t.Errorf("memif sockets left after DEL:\n%s", s)
	}
}

func TestVPPDownAddFailsWithCode11(t *testing.T) {
	sock := "/nonexistent/vpp/api.sock"
	m, err := NewManager(Config{Conn: ConnConfig{APISocket: sock}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Add(context.Background(), PodInterface{ContainerID: cidA, IfName: "fh0", Netns: "/proc/1/ns/net", Network: l2Net()})
	if attach.CodeOf(coded(err)) != attach.CodeTryAgainLater || !strings.Contains(err.Error(), sock) {
		t.Fatalf("ADD with VPP down: %v, want CNI code 11 naming %s", err, sock)
	}
	if m.Ready() == nil {
		t.Error("Ready() nil with VPP down")
	}
}

func TestVPPRestartReconciles(t *testing.T) {
	v := vpptest.Start(t, vpptest.Options{})
	a := startAgent(t, v, nil, shortTemp(t))
	ctx := context.Background()
	nsA, nsB := newNetns(t), newNetns(t)
	ra, err := a.m.Add(ctx, PodInterface{ContainerID: cidA, IfName: "fh0", Netns: nsA, Network: l2Net(), IPs: []netip.Prefix{pfx("10.9.0.1/24")}})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := a.m.Add(ctx, PodInterface{ContainerID: cidB, IfName: "fh0", Netns: nsB, Network: l2Net(), IPs: []netip.Prefix{pfx("10.9.0.2/24")}})
	if err != nil {
		t.Fatal(err)
	}
	p := startPods(t)
	pa := p.add(ra, "02:00:00:00:00:0a")
	pb := p.add(rb, "02:00:00:00:00:0b")
	mustPing(t, pa, pb.ip, pb.ip, 1, 10*time.Second)

	// Keep pinging while VPP dies, so the kill lands mid-traffic.
	tctx, stopTraffic := context.WithCancel(ctx)
	trafficDone := make(chan struct{})
	go func() { // owned by this test: stopped by stopTraffic
		defer close(trafficDone)
		for seq := uint16(1000); tctx.Err() == nil; seq++ {
			c, cancel := context.WithTimeout(tctx, 100*time.Millisecond)
			_ = pa.ping(c, pb.ip, pb.ip, seq)
			cancel()
		}
	}()
	time.Sleep(300 * time.Millisecond)
	v.Kill() // kill -9 mid-traffic: all VPP state is gone
	deadline := time.Now().Add(10 * time.Second)
	for a.m.Ready() == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if a.m.Ready() == nil {
		t.Fatal("agent still ready 10s after VPP was killed")
	}
	v.Restart()
	waitReady(t, a.m, 20*time.Second)
	stopTraffic()
	<-trafficDone
	// No CNI call: the agent re-created both memifs and the pods redialed.
	mustPing(t, pa, pb.ip, pb.ip, 2, 20*time.Second)
	mustPing(t, pb, pa.ip, pa.ip, 3, 10*time.Second)
	if pa.connects.Load() < 2 {
		t.Errorf("pod A connected %d times, want a reconnect after the VPP restart", pa.connects.Load())
	}
	// Counters come from the new VPP's stats segment, at the re-created
	// interfaces' indices.
	cs, err := a.m.PodCounters()
	if err != nil || len(cs) != 2 || cs[0].RxPackets == 0 {
		t.Errorf("counters after the VPP restart: %+v %v", cs, err)
	}
}

func TestVPPAgentRestartKeepsOwnedRemovesOrphans(t *testing.T) {
	v := vpptest.Start(t, vpptest.Options{})
	run := shortTemp(t)
	a1 := startAgent(t, v, nil, run)
	ctx := context.Background()
	ns := newNetns(t)
	ra, err := a1.m.Add(ctx, PodInterface{ContainerID: cidA, IfName: "fh0", Netns: ns, Network: l2Net(), IPs: []netip.Prefix{pfx("10.9.0.1/24")}})
	if err != nil {
		t.Fatal(err)
	}
	// Orphans: a pod interface, network and memif socket the restarted
	// agent has no record of (a DEL it never saw), plus a foreign object
	// to keep.
	if _, err := a1.m.Add(ctx, PodInterface{ContainerID: cidB, IfName: "up0", Netns: ns,
		Network: Network{Name: "orphaned", Kind: KindMemif}}); err != nil {
		t.Fatal(err)
	}
	v.MustCLI("create loopback interface")
	v.MustCLI("set interface tag loop0 someone-else")
	a1.stop() // the agent dies between ADD and DEL

	a2 := startAgent(t, v, []PodInterface{ra.Spec}, run)
	ifs, bds := telcniObjects(t, a2)
	if len(ifs) != 1 || ifs[0] != ra.Spec.Tag() || len(bds) != 1 || bds[0] != ra.Spec.Network.BridgeDomain() {
		t.Fatalf("after agent restart VPP has %v %v, want only %s in bd %d", ifs, bds, ra.Spec.Tag(), ra.Spec.Network.BridgeDomain())
	}
	if !v.Contains("show interface", "loop0") {
		t.Error("reconcile removed an interface telcni does not own")
	}
	if s := v.MustCLI("show memif"); strings.Contains(s, "-up0") {
		t.Errorf("orphan memif socket not removed:\n%s", s)
	}
	if err := a2.m.Del(ctx, ra.Spec.Key()); err != nil {
		t.Fatal(err)
	}
	ifs, bds = telcniObjects(t, a2)
	if len(ifs)+len(bds) != 0 {
		t.Errorf("after DEL VPP still has %v %v", ifs, bds)
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// ifName is the VPP interface name of a record's interface.
func ifName(t testing.TB, a *testAgent, r *Record) string {
	t.Helper()
	c, err := a.m.conn.API()
	if err != nil {
		t.Fatal(err)
	}
	all, err := (&vpp{conn: c}).dumpInterfaces(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range all {
		if i.Tag == r.Spec.Tag() {
			return i.Name
		}
	}
	t.Fatalf("no interface tagged %s", r.Spec.Tag())
	return ""
}

// A pod on a file socket (under the agent's run dir, which the pod would
// mount) reaches a pod on an abstract socket in the same bridge domain.
func TestVPPMemifFileSocket(t *testing.T) {
	v := vpptest.Start(t, vpptest.Options{})
	runDir := shortTemp(t)
	a := startAgent(t, v, nil, runDir)
	ctx := context.Background()
	fileNet := l2Net()
	fileNet.Memif.Socket = SocketFile
	ra, err := a.m.Add(ctx, PodInterface{ContainerID: cidA, IfName: "fh0", Netns: newNetns(t), Network: fileNet, IPs: []netip.Prefix{pfx("10.9.0.1/24")}})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := a.m.Add(ctx, PodInterface{ContainerID: cidB, IfName: "fh0", Netns: newNetns(t), Network: l2Net(), IPs: []netip.Prefix{pfx("10.9.0.2/24")}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ra.DeviceInfo.Memif.Path, runDir+"/memif/") {
		t.Fatalf("file socket %q not under %s", ra.DeviceInfo.Memif.Path, runDir)
	}
	p := startPods(t)
	pa := p.add(ra, "02:00:00:00:00:0a")
	pb := p.add(rb, "02:00:00:00:00:0b")
	mustPing(t, pa, pb.ip, pb.ip, 1, 10*time.Second)
}
