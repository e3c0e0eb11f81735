package sriov

import (
	"strings"
	"testing"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/internal/netnstest"
)

// Each VF setting on its own: what the PF takes is reported back by it;
// what its driver refuses fails ADD with an error naming the setting, and
// leaves the VF reset and free for the next pod.
func TestVFSettings(t *testing.T) {
	pf, _ := guestPF(t, 1)
	p := newPath(t)
	off, on := false, true
	// refused: what QEMU's igb (82576) does not support, as its driver
	// answers (EOPNOTSUPP for link state, EINVAL for a minimum rate).
	cases := []struct {
		name    string
		o       api.SRIOVOptions
		vlan    int
		refused bool
	}{
		{"spoofchk off", api.SRIOVOptions{SpoofChk: &off}, 0, false},
		{"trust on", api.SRIOVOptions{Trust: &on}, 0, false},
		{"vlan qos", api.SRIOVOptions{VLANQoS: 5}, 42, false},
		{"link state enable", api.SRIOVOptions{LinkState: "enable"}, 0, true},
		{"link state disable", api.SRIOVOptions{LinkState: "disable"}, 0, true},
		{"max tx rate", api.SRIOVOptions{MaxTxRate: 100}, 0, false},
		{"min tx rate", api.SRIOVOptions{MinTxRate: 10, MaxTxRate: 100}, 0, true},
	}
	for _, c := range cases {
		n := &api.Network{Name: "s", Path: api.PathSRIOV, Master: pf.Name, VLAN: c.vlan, SRIOV: &c.o}
		if err := n.Validate(); err != nil {
			t.Fatal(err)
		}
		ns := netnstest.New(t)
		req := request(n, ns, "ctr-"+strings.ReplaceAll(c.name, " ", "-"), "192.0.2.1/24", "")
		iface, err := p.Attach(ctx(t), req)
		if (err != nil) != c.refused {
			t.Fatalf("%s: refused=%v, want %v (err %v)", c.name, err != nil, c.refused, err)
		}
		if err != nil {
			if !strings.Contains(err.Error(), "VF 0: set sriov.") || attach.CodeOf(err) != attach.CodeInvalidConfig {
				t.Fatalf("%s: error does not name the setting: %v", c.name, err)
			}
			t.Logf("%-18s refused by the PF: %v", c.name, err)
		} else {
			rec := &attach.Record{Request: *req, Interface: *iface}
			if err := p.Check(ctx(t), rec); err != nil {
				t.Errorf("%s: CHECK: %v", c.name, err)
			}
			t.Logf("%-18s applied: PF reports %+v", c.name, pfVF(t, pf.Name, 0))
			if err := p.Detach(ctx(t), rec); err != nil {
				t.Fatalf("%s: DEL: %v", c.name, err)
			}
		}
		assertReset(t, pf.Name, 0, "")
		if len(p.taken) != 0 {
			t.Fatalf("%s: VFs still taken: %v", c.name, p.taken)
		}
	}
}
