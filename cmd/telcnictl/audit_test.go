package main

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/telcni/telcni/agent"
	"github.com/telcni/telcni/internal/netnstest"
)

// A pod whose netns is deleted behind the agent's back: ipam --audit
// reports its addresses as a leak, gc lists it (dry run) and gc --apply
// frees it; a link with a telcni alias no record owns is an orphan.
func TestAuditAndGC(t *testing.T) {
	n := newNode(t)
	a := pod{ns: "ran", name: "du-a", cid: "cid-du-a", netns: netnstest.New(t)}
	b := pod{ns: "ran", name: "du-b", cid: "cid-du-b", netns: netnstest.New(t)}
	n.add(t, a, `[{"name":"fronthaul","interface":"fh0","ips":["10.20.0.5/24","fd00:20::5/64"]},{"name":"userplane","interface":"n3"}]`)
	n.add(t, b, `[{"name":"fronthaul","interface":"fh0","ips":["10.20.0.6/24"]}]`)

	audit := func() (agent.AuditReport, int) {
		t.Helper()
		out, errs, st := n.ctl(t, "ipam", "--audit", "-o", "json")
		var rep agent.AuditReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("ipam --audit -o json: %v\n%s%s", err, out, errs)
		}
		return rep, st
	}
	// Orphans of other tests' agents may exist on a shared machine: only
	// this test's pods count.
	ours := func(rep agent.AuditReport) (leaks []agent.AuditInterface, orphans []agent.AuditOrphan) {
		for _, in := range rep.Interfaces {
			if in.State != agent.AuditLive {
				leaks = append(leaks, in)
			}
		}
		for _, o := range rep.Orphans {
			if o.Where == a.netns || o.Where == b.netns || strings.Contains(o.What, "cid-du-") {
				orphans = append(orphans, o)
			}
		}
		return leaks, orphans
	}
	rep, _ := audit()
	if leaks, orphans := ours(rep); len(rep.Interfaces) != 3 || len(leaks)+len(orphans) != 0 {
		t.Fatalf("audit of healthy pods: %+v", rep)
	}
	out, _, _ := n.ctl(t, "ipam", "--audit")
	for _, want := range []string{`ran/du-a +cid-du-a/eth0 +fh0 +fronthaul +macvlan +10.20.0.5,fd00:20::5 +LIVE +-`, `\(3 interfaces recorded, 0 leaks`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("audit table lacks %q:\n%s", want, out)
		}
	}
	if out := n.mustCtl(t, "gc"); !strings.Contains(out, "(no attachment has lost its netns)") {
		t.Errorf("gc with every netns there:\n%s", out)
	}

	// A leftover link with telcni's alias that no record owns.
	h := netnstest.Handle(t, a.netns)
	ghost := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ghost0"}, PeerName: "ghost1"}
	if err := h.LinkAdd(ghost); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetAlias(ghost, "telcni:cid-gone:ghost0"); err != nil {
		t.Fatal(err)
	}
	// du-b's netns goes without a DEL.
	if err := netns.DeleteNamed(filepath.Base(b.netns)); err != nil {
		t.Fatal(err)
	}

	rep, st := audit()
	leaks, orphans := ours(rep)
	if st != 1 || len(leaks) != 1 || leaks[0].Pod != "ran/du-b" || leaks[0].State != agent.AuditLeak ||
		!strings.Contains(leaks[0].Reason, "netns "+b.netns+" is gone") || len(leaks[0].Addresses) != 2 || leaks[0].Addresses[0].String() != "10.20.0.6" {
		t.Errorf("audit after du-b's netns is gone: status %d, leaks %+v", st, leaks)
	}
	if len(orphans) != 1 || orphans[0].Kind != "link" || orphans[0].Where != a.netns || !strings.Contains(orphans[0].What, "ghost0") ||
		!strings.Contains(orphans[0].What, "alias telcni:cid-gone:ghost0") {
		t.Errorf("orphans: %+v", orphans)
	}
	out, errs, st := n.ctl(t, "ipam", "--audit")
	if st != 1 || !regexp.MustCompile(`ran/du-b +cid-du-b/eth0 +fh0 .* LEAK +netns /var/run/netns/.* is gone`).MatchString(out) ||
		!strings.Contains(out, "Orphans (no record owns them):") || !strings.Contains(errs, "ipam audit: 1 leaks") {
		t.Errorf("audit table: status %d\n%s%s", st, out, errs)
	}

	// gc: a dry run lists du-b and frees nothing.
	out = n.mustCtl(t, "gc")
	if !regexp.MustCompile(`cid-du-b/eth0 +ran/du-b +fh0 +10.20.0.6,fd00:20::100 +netns .* is gone +would be freed`).MatchString(out) ||
		!strings.Contains(out, "(dry run: 1 attachments would be freed") || strings.Contains(out, "du-a") {
		t.Errorf("gc dry run:\n%s", out)
	}
	if out := n.mustCtl(t, "ipam"); !strings.Contains(out, "10.20.0.6") {
		t.Errorf("the dry run freed an address:\n%s", out)
	}
	out = n.mustCtl(t, "gc", "--apply")
	if !strings.Contains(out, "cid-du-b/eth0") || !strings.Contains(out, "freed") || !strings.Contains(out, "(1 of 1 attachments freed)") {
		t.Errorf("gc --apply:\n%s", out)
	}
	if out := n.mustCtl(t, "ipam"); strings.Contains(out, "10.20.0.6") || !strings.Contains(out, "10.20.0.5") {
		t.Errorf("ipam after gc --apply:\n%s", out)
	}
	if out := n.mustCtl(t, "pods"); strings.Contains(out, "du-b") || !strings.Contains(out, "du-a") {
		t.Errorf("pods after gc --apply:\n%s", out)
	}
	rep, _ = audit()
	if leaks, _ := ours(rep); len(rep.Interfaces) != 2 || len(leaks) != 0 {
		t.Errorf("audit after gc --apply: %+v", rep)
	}
	var gc agent.GCReport
	if err := json.Unmarshal([]byte(n.mustCtl(t, "gc", "-o", "json")), &gc); err != nil || gc.Applied || len(gc.Attachments) != 0 {
		t.Errorf("gc -o json after gc --apply: %+v %v", gc, err)
	}
}
