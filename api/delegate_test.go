package api

import (
	"strings"
	"testing"
)

// A delegate network names exactly one plugin or conflist, keeps IPAM on
// one side, and refuses what telcni would not do on that path; every
// problem names its field.
func TestDelegateValidation(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{`{"name":"d","path":"delegate","delegate":{"plugin":{"type":"bridge"}}}`, ""},
		{`{"name":"d","path":"delegate","delegate":{"conflist":"vendor"}}`, ""},
		{`{"name":"d","path":"delegate","delegate":{"ipam":"telcni","plugin":{"type":"bridge"}},"ipam":{"subnets":[{"cidr":"10.0.0.0/24"}]}}`, ""},
		{`{"name":"d","path":"delegate"}`, "delegate: is required by path delegate"},
		{`{"name":"d","path":"delegate","delegate":{}}`, "delegate: needs plugin or conflist"},
		{`{"name":"d","path":"delegate","delegate":{"conflist":"x","plugin":{"type":"bridge"}}}`, `delegate.conflist: "x" cannot be set together with plugin`},
		{`{"name":"d","path":"delegate","delegate":{"plugin":{"type":"telcni"}}}`, "delegate.plugin.type: \"telcni\" must name another CNI plugin"},
		{`{"name":"d","path":"delegate","delegate":{"plugin":{"type":"../bin/sh"}}}`, "must name another CNI plugin"},
		{`{"name":"d","path":"delegate","delegate":{"ipam":"telcni","plugin":{"type":"bridge"}}}`, "ipam.subnets: are required when delegate.ipam is telcni"},
		{`{"name":"d","path":"delegate","delegate":{"ipam":"telcni","plugin":{"type":"bridge","ipam":{"type":"dhcp"}}},"ipam":{"subnets":[{"cidr":"10.0.0.0/24"}]}}`, "delegate.plugin.ipam"},
		{`{"name":"d","path":"delegate","delegate":{"plugin":{"type":"bridge"}},"ipam":{"subnets":[{"cidr":"10.0.0.0/24"}]}}`, "are not used when delegate.ipam is plugin"},
		{`{"name":"d","path":"delegate","delegate":{"ipam":"dhcp","plugin":{"type":"bridge"}}}`, `delegate.ipam: "dhcp" is not plugin or telcni`},
		{`{"name":"d","path":"delegate","delegate":{"plugin":{"type":"bridge"}},"firewall":[{"direction":"ingress","action":"drop"}]}`, "firewall"},
		{`{"name":"d","path":"macvlan","master":"eth1","delegate":{"plugin":{"type":"bridge"}}}`, "delegate: \"{...}\" is not used by path macvlan"},
	} {
		_, err := ParseNetwork([]byte(c.doc))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.doc, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want %q", c.doc, err, c.want)
		}
	}
}
