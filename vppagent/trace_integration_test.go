package vppagent

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/telcni/telcni/vppagent/vpptest"
)

// A packet trace of one pod interface shows that pod's ICMP (received on
// its memif and sent to it), not the traffic between two other pods on
// the same bridge domain, and leaves VPP's trace buffer empty.
func TestVPPTracePodInterface(t *testing.T) {
	v := vpptest.Start(t, vpptest.Options{})
	a := startAgent(t, v, nil, shortTemp(t))
	ctx := context.Background()
	recs := addABC(ctx, t, a, l2Net())
	p := startPods(t)
	pa := p.add(recs[0], "02:00:00:00:00:0a")
	pb := p.add(recs[1], "02:00:00:00:00:0b")
	pc := p.add(recs[2], "02:00:00:00:00:0c")
	// Neighbours learnt first, so the trace holds ICMP, not only ARP.
	mustPing(t, pa, pb.ip, pb.ip, 1, 10*time.Second)
	mustPing(t, pc, pb.ip, pb.ip, 1, 10*time.Second)

	type result struct {
		tr  *Trace
		err error
	}
	done := make(chan result, 1)
	go func() { // owned: joined below
		tr, err := a.m.Trace(ctx, recs[0].Spec.Key(), 4, 15*time.Second)
		done <- result{tr, err}
	}()
	// Traffic while the trace runs: A <-> B (wanted), C <-> B (not A's).
	var res result
	for seq, got := uint16(10), false; !got; seq++ {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_ = pc.ping(pctx, pb.ip, pb.ip, seq)
		_ = pa.ping(pctx, pb.ip, pb.ip, seq)
		cancel()
		select {
		case res = <-done:
			got = true
		default:
		}
	}
	if res.err != nil {
		t.Fatal(res.err)
	}
	tr := res.tr
	t.Logf("trace of %s (sw_if_index %d, hw %d, node %s): %d of %d traced packets, complete %v, took %s",
		tr.Interface, tr.SwIfIndex, tr.HwIfIndex, tr.Node, len(tr.Packets), tr.Traced, tr.Complete, tr.Took)
	if !tr.Complete || len(tr.Packets) != 4 || tr.Node != "memif-input" || !strings.HasPrefix(tr.Interface, "memif") {
		t.Errorf("trace: %+v", tr)
	}
	icmp := 0
	for _, pk := range tr.Packets {
		if strings.Contains(pk.Trace, "ICMP: 10.9.0.1 -> 10.9.0.2") || strings.Contains(pk.Trace, "ICMP: 10.9.0.2 -> 10.9.0.1") {
			icmp++
		}
		if strings.Contains(pk.Trace, "ICMP: 10.9.0.3") || strings.Contains(pk.Trace, "-> 10.9.0.3") {
			t.Errorf("trace of pod A holds pod C's packet:\n%s", pk.Trace)
		}
	}
	if icmp == 0 {
		for _, pk := range tr.Packets {
			t.Logf("Packet %d\n%s", pk.Number, pk.Trace)
		}
		t.Errorf("no ICMP of pod A in its trace")
	} else {
		t.Logf("Packet %d\n%s", tr.Packets[0].Number, tr.Packets[0].Trace)
	}
	if out := v.MustCLI("show trace"); strings.Contains(out, "Packet 1") {
		t.Errorf("trace buffer not cleared:\n%s", out)
	}
	// Nothing to see: the trace ends at its wait, incomplete.
	tr, err := a.m.Trace(ctx, recs[0].Spec.Key(), 1, 500*time.Millisecond)
	if err != nil || tr.Complete || len(tr.Packets) != 0 {
		t.Errorf("idle trace: %+v %v", tr, err)
	}
	if _, err := a.m.Trace(ctx, "nosuch/fh0", 1, time.Second); err == nil {
		t.Error("trace of an unknown interface succeeded")
	}
}

func TestParseTraceAndMatch(t *testing.T) {
	out := `------------------- Start of thread 0 vpp_main -------------------
Packet 1

00:00:01:000001: memif-input
  memif: hw_if_index 2 next-index 4
00:00:01:000002: ethernet-input
  frame: flags 0x1, hw-if-index 2, sw-if-index 2
  IP4: 02:00:00:00:00:0a -> 02:00:00:00:00:0b

Packet 2

00:00:01:000003: memif-input
  memif: hw_if_index 3 next-index 4
00:00:01:000004: l2-output
  l2-output: sw_if_index 12 dst 02:00:00:00:00:0b
00:00:01:000005: memif99/0-output
  memif99/0
`
	pk := parseTrace(out)
	if len(pk) != 2 || pk[0].Number != 1 || !strings.HasPrefix(pk[0].Trace, "00:00:01:000001: memif-input") || !strings.HasSuffix(pk[1].Trace, "memif99/0") {
		t.Fatalf("parseTrace: %+v", pk)
	}
	if m := packetMatcher("memif1/0", 2, 2); !m(pk[0].Trace) || m(pk[1].Trace) {
		t.Error("match by hw/sw index")
	}
	if m := packetMatcher("memif99/0", 1, 1); m(pk[0].Trace) || !m(pk[1].Trace) {
		t.Error("match by name")
	}
	if m := packetMatcher("memif9/0", 1, 1); m(pk[1].Trace) {
		t.Error("memif9/0 matched memif99/0")
	}
	if m := packetMatcher("memif1/0", 1, 1); m(pk[1].Trace) {
		t.Error("sw_if_index 1 matched sw_if_index 12")
	}
	if hwIndex("              Name                Idx   Link  Hardware\nmemif1/0                           2     up   memif1/0\n", "memif1/0") != 2 {
		t.Error("hwIndex")
	}
}
