package api

import (
	"slices"
	"strings"
	"testing"
)

func TestParseNetworkSRIOVOptions(t *testing.T) {
	n, err := ParseNetwork([]byte(`{"name":"fh","path":"sriov","master":"ens1f0","vlan":100,
		"sriov":{"vfs":"0-3,6","vlanQoS":5,"spoofchk":false,"trust":true,"linkState":"enable","minTxRate":100,"maxTxRate":1000,"resourceName":"intel.com/sriov_netdevice"},
		"ipam":{"subnets":[{"cidr":"10.1.0.0/24"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	o := n.SRIOV
	if o == nil || o.VFs != "0-3,6" || o.VLANQoS != 5 || o.SpoofChk == nil || *o.SpoofChk || o.Trust == nil || !*o.Trust ||
		o.LinkState != "enable" || o.MinTxRate != 100 || o.MaxTxRate != 1000 || o.ResourceName != "intel.com/sriov_netdevice" {
		t.Fatalf("sriov options %+v", o)
	}
	bad := map[string]string{
		`{"name":"a","path":"macvlan","master":"eth1","sriov":{}}`:                                            `sriov: "{...}" is not used by path macvlan`,
		`{"name":"a","path":"memif","sriov":{"vfs":"1"}}`:                                                     `sriov: "{...}" is not used by path memif`,
		`{"name":"a","path":"sriov","master":"p0","vlan":5,"sriov":{"vlanQoS":8}}`:                            `sriov.vlanQoS: 8 is out of range 0-7`,
		`{"name":"a","path":"sriov","master":"p0","sriov":{"vlanQoS":3}}`:                                     `sriov.vlanQoS: 3 needs vlan`,
		`{"name":"a","path":"sriov","master":"p0","sriov":{"vfs":"3-1"}}`:                                     `sriov.vfs: "3-1" is not a VF list`,
		`{"name":"a","path":"sriov","master":"p0","sriov":{"vfs":"x"}}`:                                       `sriov.vfs: "x" is not a VF list`,
		`{"name":"a","path":"sriov-dpdk","master":"p0","sriov":{"linkState":"up"}}`:                           `sriov.linkState: "up" is not auto, enable or disable`,
		`{"name":"a","path":"sriov","master":"p0","sriov":{"maxTxRate":-1}}`:                                  `sriov.maxTxRate: -1 is negative`,
		`{"name":"a","path":"sriov","master":"p0","sriov":{"minTxRate":-2}}`:                                  `sriov.minTxRate: -2 is negative`,
		`{"name":"a","path":"sriov","master":"p0","sriov":{"minTxRate":9,"maxTxRate":5}}`:                     `sriov.minTxRate: 9 is above maxTxRate 5`,
		`{"name":"a","path":"sriov","master":"p0","sriov":{"resourceName":"sriov_netdevice"}}`:                `sriov.resourceName: "sriov_netdevice" is not an extended resource name`,
		`{"name":"a","path":"sriov","master":"p0","sriov":{"resourceName":"Intel.com/vf"}}`:                   `sriov.resourceName: "Intel.com/vf" is not an extended resource name`,
		`{"name":"a","path":"sriov","master":"p0","vlan":5000}`:                                               `vlan: 5000 is out of range 1-4094`,
		`{"name":"a","path":"sriov","sriov":{}}`:                                                              `master: is required by path sriov`,
		`{"name":"a","path":"sriov","master":"p0","sriov":{"bogus":1}}`:                                       `bogus`,
		`{"name":"a","path":"sriov-dpdk","master":"p0","firewall":[{"direction":"ingress","action":"drop"}]}`: `firewall: "[...]" cannot be enforced on path sriov-dpdk`,
	}
	for in, want := range bad {
		_, err := ParseNetwork([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseNetwork(%s) = %v, want error containing %q", in, err, want)
		}
	}
}

func TestParseVFList(t *testing.T) {
	got, err := ParseVFList("0-3, 6,2")
	if err != nil || !slices.Equal(got, []int{0, 1, 2, 3, 6}) {
		t.Fatalf("ParseVFList = %v, %v", got, err)
	}
	for _, s := range []string{"", "-1", "a", "2-", "5-4", "0-5000"} {
		if _, err := ParseVFList(s); err == nil {
			t.Errorf("ParseVFList(%q) accepted", s)
		}
	}
}
