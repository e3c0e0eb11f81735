package vppagent

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/vppagent/vpptest"
)

// noSuchPCI is a VF address no machine has (PCI domain 0x1234).
const noSuchPCI = "1234:01:10.0"

// startAgentVFs is startAgent with a VF lender.
func startAgentVFs(t *testing.T, v *vpptest.VPP, vfs attach.VFLender, runDir string) *testAgent {
	t.Helper()
	m, err := NewManager(Config{
		Conn:   ConnConfig{APISocket: v.APISocket, StatsSocket: v.StatsSocket, PingInterval: 200 * time.Millisecond, MaxBackoff: 500 * time.Millisecond},
		RunDir: runDir,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
		VFs:    vfs,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &testAgent{m: m, cancel: cancel, wg: sync.WaitGroup{}}
	a.wg.Add(1)
	go func() { defer a.wg.Done(); m.Run(ctx) }() // owned: a.stop ends it
	t.Cleanup(a.stop)
	waitReady(t, m, 15*time.Second)
	if err := m.Retain(ctx, nil); err != nil {
		t.Fatal(err)
	}
	return a
}

// The VPP side of a VF from the pool, against the real VPP 25.10 (avf
// plugin loaded, no DPDK plugin, no VF): the pool lends a VF whose PCI
// address does not exist, so VPP's avf_create fails; its error comes back
// with the network and the PCI address, nothing of the network is left in
// VPP and the VF goes back to the pool. Likewise a dpdk-vf uplink, which
// VPP (without DPDK) cannot have: ADD says what startup.conf needs.
func TestVPPUplinkVFFromPoolFails(t *testing.T) {
	if _, err := os.Stat("/sys/bus/pci/devices/" + noSuchPCI); err == nil {
		t.Fatalf("this machine has PCI device %s; the test needs an address that does not exist", noSuchPCI)
	}
	v := vpptest.Start(t, vpptest.Options{With: []string{"avf_plugin.so"}})
	lend := newFakeLender()
	lend.pfs["ens1f0"] = []string{noSuchPCI}
	a := startAgentVFs(t, v, lend, shortTemp(t))
	ctx := context.Background()
	for _, kind := range []string{UplinkAVF, UplinkDPDKVF} {
		n := Network{Name: "vf-" + kind, Kind: KindMemif, Uplink: &Uplink{Kind: kind, PF: "ens1f0"}}
		_, err := a.m.Add(ctx, PodInterface{ContainerID: cidA, IfName: "u0", Netns: newNetns(t), Network: n})
		var me *MissingPluginError
		if errors.As(err, &me) {
			vpptest.Skip(t, "VPP_BIN's VPP has no avf plugin: %v", err)
		}
		want := "create avf on " + noSuchPCI
		if kind == UplinkDPDKVF {
			want = "dpdk { dev " + noSuchPCI + " }"
		}
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), n.Name) {
			t.Fatalf("ADD on %s uplink with VF %s: %v, want an error with %q", kind, noSuchPCI, err, want)
		}
		t.Logf("%s: %v", kind, err)
		if ifs, bds := telcniObjects(t, a); len(ifs)+len(bds) != 0 {
			t.Fatalf("left in VPP after the failed ADD: %v %v", ifs, bds)
		}
		if _, held := lend.holds(n.Name); held {
			t.Fatalf("%s: the VF is still lent after the failed ADD", kind)
		}
		if out := v.MustCLI("show interface"); strings.Contains(out, "avf-") {
			t.Fatalf("an avf interface is left:\n%s", out)
		}
	}
	if len(lend.returns) != 2 || lend.takes != 2 {
		t.Fatalf("takes %d, returns %v: want each VF taken and returned", lend.takes, lend.returns)
	}
	// The avf uplink by PCI address (no pool) fails the same way.
	_, err := a.m.Add(ctx, PodInterface{ContainerID: cidB, IfName: "u0", Netns: newNetns(t),
		Network: Network{Name: "vf-static", Kind: KindMemif, Uplink: &Uplink{Kind: UplinkAVF, PCI: noSuchPCI}}})
	if err == nil || !strings.Contains(err.Error(), "create avf on "+noSuchPCI) {
		t.Fatalf("avf uplink by PCI address: %v", err)
	}
	if ifs, bds := telcniObjects(t, a); len(ifs)+len(bds) != 0 {
		t.Fatalf("left in VPP after the failed ADD: %v %v", ifs, bds)
	}
}
