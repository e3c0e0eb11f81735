package api

import (
	"errors"
	"strings"
	"testing"
)

const macvlanYAML = `
name: fronthaul
path: macvlan
master: demo0
mode: bridge
mtu: 1500
ipam:
  subnets:
  - cidr: 10.20.0.0/24
    rangeStart: 10.20.0.100
    rangeEnd: 10.20.0.199
    gateway: 10.20.0.1
    exclude: [10.20.0.150, 10.20.0.160/30]
  - cidr: fd00:20::/64
  routes:
  - dst: 10.30.0.0/16
    gw: 10.20.0.1
`

func TestParseNetworkYAML(t *testing.T) {
	n, err := ParseNetwork([]byte(macvlanYAML))
	if err != nil {
		t.Fatal(err)
	}
	subs := n.IPAM.ParsedSubnets()
	if len(subs) != 2 {
		t.Fatalf("got %d subnets", len(subs))
	}
	if subs[0].RangeStart.String() != "10.20.0.100" || subs[0].Gateway.String() != "10.20.0.1" ||
		!subs[0].Excluded(mustAddr("10.20.0.161")) || subs[0].Excluded(mustAddr("10.20.0.164")) {
		t.Errorf("IPv4 subnet parsed wrong: %+v", subs[0])
	}
	if subs[1].RangeStart.String() != "fd00:20::1" || subs[1].RangeEnd.String() != "fd00:20::ffff:ffff:ffff:ffff" {
		t.Errorf("IPv6 default range wrong: %v-%v", subs[1].RangeStart, subs[1].RangeEnd)
	}
	if n.EffectiveMode() != "bridge" || n.Key() != "fronthaul" {
		t.Errorf("mode %q key %q", n.EffectiveMode(), n.Key())
	}
}

func TestParseNetworkNAD(t *testing.T) {
	n, err := ParseNetwork([]byte(`apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: up, namespace: core}
spec:
  config: '{"cniVersion":"1.1.0","type":"telcni","path":"macvlan","master":"eth1"}'
`))
	if err != nil {
		t.Fatal(err)
	}
	if n.Key() != "core/up" || n.Master != "eth1" {
		t.Errorf("got %+v", n)
	}
}

func TestParseNetworkReportsEveryFieldError(t *testing.T) {
	_, err := ParseNetwork([]byte(`{"name":"x","path":"macvlan","vlan":100,"mode":"l3","mtu":50,"colour":1,
		"ipam":{"subnets":[{"cidr":"10.0.0.1/24","gateway":"10.1.0.1"},{"cidr":"10.9.0.0/16","rangeStart":"10.8.0.1"}],
		"routes":[{"dst":"0.0.0.0/0","gw":"fd00::1"}]},
		"firewall":[{"direction":"in","action":"drop","protocol":"icmp","ports":[80]}]}`))
	if err == nil {
		t.Fatal("want an error")
	}
	// Unknown fields are reported first and stop validation of values,
	// since a misspelt field usually explains the other errors.
	if !strings.Contains(err.Error(), "colour: is not a known field") {
		t.Fatalf("unknown field not reported: %v", err)
	}
	_, err = ParseNetwork([]byte(`{"name":"x","path":"macvlan","vlan":100,"mode":"l3","mtu":50,
		"ipam":{"subnets":[{"cidr":"10.0.0.1/24","gateway":"10.1.0.1"},{"cidr":"10.9.0.0/16","rangeStart":"10.8.0.1"}],
		"routes":[{"dst":"0.0.0.0/0","gw":"fd00::1"}]},
		"firewall":[{"direction":"in","action":"drop","protocol":"icmp","ports":[80]}]}`))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want *ValidationError, got %v", err)
	}
	for _, want := range []string{
		`master: is required by path macvlan`,
		`vlan: 100 is not used by path macvlan`,
		`mode: "l3" is not a mode of path macvlan`,
		`mtu: 50 is out of range`,
		`ipam.subnets[0].cidr: "10.0.0.1/24" has host bits set (did you mean 10.0.0.0/24?)`,
		`ipam.subnets[1].rangeStart: "10.8.0.1" is not inside cidr 10.9.0.0/16`,
		`ipam.routes[0].gw: "fd00::1" is not of the same IP family`,
		`firewall[0].direction: "in" is not ingress or egress`,
		`firewall[0].ports: [80] need protocol tcp, udp or sctp`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q\nfull: %v", want, err)
		}
	}
}

func TestParseNetworkPathRules(t *testing.T) {
	cases := map[string]string{
		`{"name":"a","path":"vlan","master":"eth1"}`:                                       "vlan: is required by path vlan",
		`{"name":"a","path":"vxlan","master":"eth1","vxlan":{"vni":0}}`:                    "master: \"eth1\" is not used by path vxlan",
		`{"name":"a","path":"vxlan","vxlan":{"vni":5,"group":"10.0.0.1"}}`:                 "vxlan.group: \"10.0.0.1\" is not a multicast IP address",
		`{"name":"a","path":"sriov","master":"pf0","mode":"x"}`:                            "mode: \"x\" is not used by path sriov",
		`{"name":"a","path":"teleport"}`:                                                   "path: \"teleport\" is not a known path",
		`{"name":"a","path":"ipvlan","master":"eth1","type":"bridge"}`:                     "type: \"bridge\" is not \"telcni\"",
		`{"name":"a","path":"memif","mtu":1000,"ipam":{"subnets":[{"cidr":"fd00::/64"}]}}`: "mtu: 1000 is below 1280",
	}
	for in, want := range cases {
		_, err := ParseNetwork([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseNetwork(%s) = %v, want error containing %q", in, err, want)
		}
	}
}

func FuzzParseNetwork(f *testing.F) {
	f.Add([]byte(macvlanYAML))
	f.Add([]byte(`{"name":"a","path":"vxlan","vxlan":{"vni":5,"group":"239.0.0.1"}}`))
	f.Add([]byte("kind: NetworkAttachmentDefinition\nspec: {config: '{}'}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := ParseNetwork(data)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Errors) == 0 {
				t.Fatalf("error is not a non-empty ValidationError: %v", err)
			}
			return
		}
		// Whatever is accepted must re-validate and parse fully.
		if err := n.Validate(); err != nil {
			t.Fatalf("accepted network fails Validate: %v", err)
		}
		if got := len(n.IPAM.ParsedSubnets()); got != len(n.IPAM.Subnets) {
			t.Fatalf("accepted %d subnets but %d parse", len(n.IPAM.Subnets), got)
		}
	})
}
