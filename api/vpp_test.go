package api

import (
	"strings"
	"testing"
)

func TestParseNetworkVPPOptions(t *testing.T) {
	n, err := ParseNetwork([]byte(`{"name":"fh","path":"memif","mode":"ethernet","vlan":100,
		"vpp":{"socket":"file","queues":2,"ringSize":2048,"uplink":{"kind":"af_packet","name":"eth1"}},
		"ipam":{"subnets":[{"cidr":"10.1.0.0/24"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if n.VPP == nil || n.VPP.Uplink == nil || n.VPP.Uplink.Name != "eth1" || n.VPP.Queues != 2 || n.VPP.Socket != "file" {
		t.Fatalf("vpp options %+v", n.VPP)
	}
	bad := map[string]string{
		`{"name":"a","path":"macvlan","master":"eth1","vpp":{}}`:                                     "vpp: \"{...}\" is not used by path macvlan",
		`{"name":"a","path":"memif","vlan":10}`:                                                      "vlan: 10 needs vpp.uplink",
		`{"name":"a","path":"memif","mode":"ip"}`:                                                    "memif mode ip needs vpp.routed",
		`{"name":"a","path":"memif","vpp":{"ringSize":1000}}`:                                        "vpp.ringSize: 1000 is not a power of 2",
		`{"name":"a","path":"memif","vpp":{"socket":"tcp"}}`:                                         "vpp.socket: \"tcp\" is not abstract or file",
		`{"name":"a","path":"vhostuser","vpp":{"queues":2}}`:                                         "vpp.queues: is a memif option",
		`{"name":"a","path":"memif","vpp":{"uplink":{"kind":"tap","name":"x"}}}`:                     "vpp.uplink.kind: \"tap\" is not one of",
		`{"name":"a","path":"memif","vpp":{"uplink":{"kind":"avf","pci":"x"}}}`:                      "vpp.uplink.pci: \"x\" is not a PCI address",
		`{"name":"a","path":"memif","vpp":{"routed":true,"uplink":{"kind":"af_packet","name":"x"}}}`: "a routed network has none",
		`{"name":"a","path":"memif","vpp":{"bogus":1}}`:                                              "bogus",
	}
	for in, want := range bad {
		_, err := ParseNetwork([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseNetwork(%s) = %v, want error containing %q", in, err, want)
		}
	}
}

// An uplink's VF from the node's SR-IOV pool: kinds avf (pf instead of
// pci) and dpdk-vf (pf required); every mistake names its field.
func TestParseNetworkVPPUplinkFromPool(t *testing.T) {
	for _, in := range []string{
		`{"name":"a","path":"memif","vpp":{"uplink":{"kind":"avf","pf":"ens1f0"}}}`,
		`{"name":"a","path":"vhostuser","vlan":7,"vpp":{"uplink":{"kind":"dpdk-vf","pf":"ens1f0"}}}`,
		`{"name":"a","path":"memif","vpp":{"uplink":{"kind":"avf","pci":"0000:01:10.0"}}}`,
	} {
		n, err := ParseNetwork([]byte(in))
		if err != nil {
			t.Errorf("ParseNetwork(%s): %v", in, err)
			continue
		}
		if u := n.VPP.Uplink; u.PF == "" && u.PCI == "" {
			t.Errorf("ParseNetwork(%s): uplink %+v lost its pf", in, u)
		}
	}
	bad := map[string]string{
		`{"name":"a","path":"memif","vpp":{"uplink":{"kind":"dpdk-vf"}}}`:                                   "vpp.uplink.pf: is required by uplink kind dpdk-vf",
		`{"name":"a","path":"memif","vpp":{"uplink":{"kind":"avf"}}}`:                                       "vpp.uplink.pf: is required by uplink kind avf unless vpp.uplink.pci",
		`{"name":"a","path":"memif","vpp":{"uplink":{"kind":"avf","pf":"eth1","pci":"0000:01:10.0"}}}`:      "vpp.uplink.pci: \"0000:01:10.0\" and vpp.uplink.pf exclude each other",
		`{"name":"a","path":"memif","vpp":{"uplink":{"kind":"dpdk-vf","pf":"eth1","pci":"0000:01:10.0"}}}`:  "vpp.uplink.pci: \"0000:01:10.0\" is not used by uplink kind dpdk-vf",
		`{"name":"a","path":"memif","vpp":{"uplink":{"kind":"af_packet","name":"eth1","pf":"eth2"}}}`:       "vpp.uplink.pf: \"eth2\" is not used by uplink kind af_packet",
		`{"name":"a","path":"memif","vpp":{"uplink":{"kind":"dpdk-vf","pf":"eth1","name":"up0"}}}`:          "vpp.uplink.name: \"up0\" is not used by uplink kind dpdk-vf",
		`{"name":"a","path":"memif","vpp":{"uplink":{"kind":"dpdk-vf","pf":"a/very/long/interface/name"}}}`: "vpp.uplink.pf: \"a/very/long/interface/name\" is not a valid interface name",
	}
	for in, want := range bad {
		_, err := ParseNetwork([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseNetwork(%s) = %v, want error containing %q", in, err, want)
		}
	}
}
