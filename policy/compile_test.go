package policy

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// world: namespace "app" (team=a) and "other" (team=b) on network
// app/net1; the target is app/server.
func world() *Input {
	pod := func(ns, name, lbl, addr string, extra ...string) *Pod {
		p := &Pod{Namespace: ns, Name: name, Labels: map[string]string{}, Addrs: map[string][]netip.Addr{}}
		for _, kv := range strings.Fields(lbl) {
			k, v, _ := strings.Cut(kv, "=")
			p.Labels[k] = v
		}
		if addr != "" {
			p.Addrs["app/net1"] = []netip.Addr{netip.MustParseAddr(addr)}
		}
		for _, a := range extra {
			p.Addrs["app/net2"] = append(p.Addrs["app/net2"], netip.MustParseAddr(a))
		}
		return p
	}
	return &Input{
		Pods: []*Pod{
			pod("app", "server", "role=server", "10.0.0.1"),
			pod("app", "client", "role=client", "10.0.0.2", "10.1.0.2"),
			pod("app", "client6", "role=client", "fd00::2"),
			pod("app", "nonet", "role=client", ""),
			pod("other", "client", "role=client", "10.0.0.3"),
			pod("other", "admin", "role=admin", "10.0.0.4"),
		},
		Namespaces: map[string]map[string]string{"app": {"team": "a"}, "other": {"team": "b"}},
	}
}

func mnp(t *testing.T, y string) *MultiNetworkPolicy {
	t.Helper()
	var p MultiNetworkPolicy
	if err := yaml.UnmarshalStrict([]byte(y), &p); err != nil {
		t.Fatalf("policy: %v\n%s", err, y)
	}
	return &p
}

const head = `
metadata:
  namespace: app
  annotations: {k8s.v1.cni.cncf.io/policy-for: net1}
`

func TestCompile(t *testing.T) {
	for _, tc := range []struct {
		name     string
		policies []string
		target   string // pod name in app; network app/net1 unless net is set
		net      string
		ingress  []string // nil: not isolated; [] isolated, nothing allowed
		egress   []string
		notes    int
		ports    []ContainerPort // the target's container ports
	}{
		{name: "no policy: default allow", target: "server"},
		{name: "selected, no rules: deny all ingress", target: "server",
			policies: []string{head + `  name: deny
spec: {podSelector: {}}`}, ingress: []string{}},
		{name: "policy selects other pods only", target: "server",
			policies: []string{head + `  name: p
spec: {podSelector: {matchLabels: {role: db}}}`}},
		{name: "policy-for another network", target: "server", net: "app/net2",
			policies: []string{head + `  name: p
spec: {podSelector: {}}`}},
		{name: "policy-for namespace/name", target: "server", net: "app/net2",
			policies: []string{`
metadata: {name: p, namespace: app, annotations: {k8s.v1.cni.cncf.io/policy-for: "app/net1, app/net2"}}
spec:
  podSelector: {}
  ingress: [{from: [{podSelector: {matchLabels: {role: client}}}]}]`},
			ingress: []string{"10.1.0.2/32 any"}},
		{name: "no policy-for annotation: ignored", target: "server", notes: 1,
			policies: []string{`
metadata: {name: p, namespace: app}
spec: {podSelector: {}}`}},
		{name: "policy of another namespace does not select", target: "server",
			policies: []string{`
metadata: {name: p, namespace: other, annotations: {k8s.v1.cni.cncf.io/policy-for: app/net1}}
spec: {podSelector: {}}`}},
		{name: "empty from: all sources", target: "server",
			policies: []string{head + `  name: p
spec:
  podSelector: {matchLabels: {role: server}}
  ingress: [{}]`}, ingress: []string{"any any"}},
		{name: "pod selector: this namespace's pods on this network, both families", target: "server",
			policies: []string{head + `  name: p
spec:
  podSelector: {}
  ingress: [{from: [{podSelector: {matchLabels: {role: client}}}]}]`},
			ingress: []string{"10.0.0.2/32 any", "fd00::2/128 any"}},
		{name: "namespace selector: every pod of those namespaces", target: "server",
			policies: []string{head + `  name: p
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {team: b}}}]}]`},
			ingress: []string{"10.0.0.3/32 any", "10.0.0.4/32 any"}},
		{name: "namespace and pod selector together", target: "server",
			policies: []string{head + `  name: p
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {role: client}}}]}]`},
			ingress: []string{"10.0.0.2/32 any", "10.0.0.3/32 any", "fd00::2/128 any"}},
		{name: "ipBlock with except", target: "server",
			policies: []string{head + `  name: p
spec:
  podSelector: {}
  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/24, except: [10.0.0.0/26, 10.0.0.128/25]}}]}]`},
			ingress: []string{"10.0.0.64/26 any"}},
		{name: "ipBlock except a single address", target: "server",
			policies: []string{head + `  name: p
spec:
  podSelector: {}
  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/30, except: [10.0.0.1/32]}}]}]`},
			ingress: []string{"10.0.0.0/32 any", "10.0.0.2/31 any"}},
		{name: "ports: protocols, default TCP, ranges, named refused", target: "server", notes: 1,
			policies: []string{head + `  name: p
spec:
  podSelector: {}
  ingress:
  - from: [{podSelector: {matchLabels: {role: client}}}]
    ports: [{port: 80}, {protocol: UDP, port: 53}, {protocol: SCTP, port: 38412}, {port: 9000, endPort: 9010}, {port: http}]`},
			ingress: []string{"10.0.0.2/32 sctp/38412", "10.0.0.2/32 tcp/80", "10.0.0.2/32 tcp/9000-9010", "10.0.0.2/32 udp/53",
				"fd00::2/128 sctp/38412", "fd00::2/128 tcp/80", "fd00::2/128 tcp/9000-9010", "fd00::2/128 udp/53"}},
		{name: "only a named port: the rule allows nothing", target: "server", notes: 1,
			policies: []string{head + `  name: p
spec:
  podSelector: {}
  ingress: [{ports: [{port: http}]}]`}, ingress: []string{}},
		{name: "named ingress ports: the target's container ports of that name and protocol", target: "server", notes: 1,
			ports: []ContainerPort{{Name: "http", Protocol: "tcp", Port: 8080}, {Name: "n2", Protocol: "sctp", Port: 38412}, {Name: "dns", Protocol: "tcp", Port: 5353}},
			policies: []string{head + `  name: p
spec:
  podSelector: {}
  ingress:
  - from: [{podSelector: {matchLabels: {role: client}}}]
    ports: [{port: http}, {protocol: SCTP, port: n2}, {protocol: UDP, port: dns}]`},
			ingress: []string{"10.0.0.2/32 sctp/38412", "10.0.0.2/32 tcp/8080", "fd00::2/128 sctp/38412", "fd00::2/128 tcp/8080"}},
		{name: "named egress port: each peer's, unknown here: allows nothing", target: "server", notes: 1,
			ports: []ContainerPort{{Name: "http", Protocol: "tcp", Port: 8080}},
			policies: []string{head + `  name: p
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress: [{ports: [{port: http}]}]`}, egress: []string{}},
		{name: "protocol without port", target: "server",
			policies: []string{head + `  name: p
spec:
  podSelector: {}
  ingress: [{ports: [{protocol: UDP}]}]`}, ingress: []string{"any udp"}},
		{name: "union of policies, duplicates once", target: "server",
			policies: []string{head + `  name: a
spec:
  podSelector: {}
  ingress: [{from: [{ipBlock: {cidr: 192.0.2.0/24}}], ports: [{port: 80}]}]`, head + `  name: b
spec:
  podSelector: {matchLabels: {role: server}}
  ingress: [{from: [{ipBlock: {cidr: 192.0.2.0/24}}], ports: [{port: 80}, {port: 443}]}]`},
			ingress: []string{"192.0.2.0/24 tcp/80", "192.0.2.0/24 tcp/443"}},
		{name: "egress by default when the policy has egress rules", target: "client",
			policies: []string{head + `  name: p
spec:
  podSelector: {matchLabels: {role: client}}
  egress: [{to: [{podSelector: {matchLabels: {role: server}}}], ports: [{protocol: UDP, port: 7}]}]`},
			ingress: []string{}, egress: []string{"10.0.0.1/32 udp/7"}},
		{name: "policyTypes Egress only leaves ingress open", target: "client",
			policies: []string{head + `  name: p
spec:
  podSelector: {}
  policyTypes: [Egress]`}, egress: []string{}},
		{name: "peers with no address on the network allow nothing", target: "server",
			policies: []string{head + `  name: p
spec:
  podSelector: {}
  ingress: [{from: [{podSelector: {matchLabels: {role: nobody}}}]}]`}, ingress: []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := world()
			for _, y := range tc.policies {
				in.Policies = append(in.Policies, mnp(t, y))
			}
			var target *Pod
			for _, p := range in.Pods {
				if p.Namespace == "app" && p.Name == tc.target {
					target = p
				}
			}
			net := tc.net
			if net == "" {
				net = "app/net1"
			}
			x := NewIndex(in)
			r, _ := x.Compile(Target{Pod: target, Network: net, Ports: tc.ports})
			check := func(dir string, d Direction, want []string) {
				t.Helper()
				if want == nil {
					if d.Isolated {
						t.Errorf("%s isolated, want open; allows %v", dir, str(d.Allow))
					}
					return
				}
				if !d.Isolated {
					t.Errorf("%s open, want isolated", dir)
				}
				if got := str(d.Allow); !slices.Equal(got, want) {
					t.Errorf("%s allows\n %q\nwant\n %q", dir, got, want)
				}
			}
			check("ingress", r.Ingress, tc.ingress)
			check("egress", r.Egress, tc.egress)
			if len(x.Notes) != tc.notes {
				t.Errorf("notes %q, want %d", x.Notes, tc.notes)
			}
		})
	}
}

func str(rules []Rule) []string {
	out := []string{}
	for _, r := range rules {
		out = append(out, r.String())
	}
	return out
}

// TestCompileDeterministic: the same world in another order compiles to
// an Equal result (the controller re-applies nothing then).
func TestCompileDeterministic(t *testing.T) {
	policies := []string{head + `  name: a
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {}}], ports: [{port: 80}, {protocol: UDP, port: 53}]}]`, head + `  name: b
spec:
  podSelector: {}
  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/24]}}]}]`}
	compile := func(reverse bool) Rules {
		in := world()
		for _, y := range policies {
			in.Policies = append(in.Policies, mnp(t, y))
		}
		if reverse {
			slices.Reverse(in.Pods)
			slices.Reverse(in.Policies)
		}
		r, _ := NewIndex(in).Compile(Target{Pod: in.Pods[slices.IndexFunc(in.Pods, func(p *Pod) bool { return p.Namespace == "app" && p.Name == "server" })], Network: "app/net1"})
		return r
	}
	a, b := compile(false), compile(true)
	if !a.Equal(b) {
		t.Fatalf("order changed the result:\n%v\n%v", str(a.Ingress.Allow), str(b.Ingress.Allow))
	}
	if len(a.Ingress.Allow) < 10 {
		t.Fatalf("expected a sizeable rule set, got %v", str(a.Ingress.Allow))
	}
}

func TestSubtract(t *testing.T) {
	for _, tc := range []struct {
		in, ex string
		want   []string
	}{
		{"10.0.0.0/24", "192.168.0.0/24", []string{"10.0.0.0/24"}},
		{"10.0.0.0/24", "10.0.0.0/16", nil},
		{"10.0.0.0/24", "10.0.0.0/25", []string{"10.0.0.128/25"}},
		{"10.0.0.0/24", "10.0.0.255/32", []string{"10.0.0.0/25", "10.0.0.128/26", "10.0.0.192/27", "10.0.0.224/28", "10.0.0.240/29", "10.0.0.248/30", "10.0.0.252/31", "10.0.0.254/32"}},
		{"fd00::/64", "fd00::8000:0:0:0/65", []string{"fd00::/65"}},
		{"10.0.0.0/24", "fd00::/8", []string{"10.0.0.0/24"}},
	} {
		got := subtract([]netip.Prefix{netip.MustParsePrefix(tc.in)}, netip.MustParsePrefix(tc.ex))
		var s []string
		for _, p := range got {
			s = append(s, p.String())
		}
		slices.Sort(s)
		want := slices.Clone(tc.want)
		slices.Sort(want)
		if !slices.Equal(s, want) {
			t.Errorf("%s - %s = %v, want %v", tc.in, tc.ex, s, want)
		}
	}
}

func unmarshal(b []byte, v any) error { return yaml.UnmarshalStrict(b, v) }
