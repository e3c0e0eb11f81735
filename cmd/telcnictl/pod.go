package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/telcni/telcni/agent"
)

func (a *app) podCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "pod NAMESPACE/NAME",
		Short: "Every interface of one pod and the objects behind it (links, routes, rules, VPP interfaces, VFs)",
		Long: `pod shows one pod as the agent sees it now: its attachments (container id,
CNI interface, netns, mode, state) and each interface with its network,
path, addresses, MAC and state, and what stands behind it:

  kernel paths (macvlan, ipvlan, vlan, vxlan) and kernel VFs: the link in the
    pod's netns (ifindex, kind, alias, admin/oper state, MTU), the host
    device it hangs off, its routes in every table and the policy rules
    for its addresses, read with netlink by the agent;
  memif and vhostuser: the VPP interface (sw_if_index, VPP's name, the tag,
    the memif socket or vhost-user path, rx/tx/drop counters);
  sriov and sriov-dpdk: the VF (PF, VF index, PCI address, driver).

What cannot be read (netns gone, VPP down) is shown as an error line and
the rest is still printed. The pod name completes from the agent.`,
		Example: `  telcnictl pod ran/du-a
  telcnictl pod ran/du-a -o json | jq '.interfaces[] | {ifName, link}'
  telcnictl pod ran/cnf-0 -o yaml`,
		Args:              args(cobra.ExactArgs(1)),
		ValidArgsFunction: a.completePods,
		RunE: func(cmd *cobra.Command, argv []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			v, err := a.getPod(ctx, argv[0])
			if err != nil {
				return err
			}
			return a.emit(cmd.OutOrStdout(), v, func(w io.Writer) error { return writePod(w, v) })
		},
	}
}

// getPod fetches the agent's view of NS/NAME.
func (a *app) getPod(ctx context.Context, pod string) (*agent.PodView, error) {
	ns, name, err := splitPod(pod)
	if err != nil {
		return nil, err
	}
	var v agent.PodView
	if err := a.client().Get(ctx, agent.PodPath+url.PathEscape(ns)+"/"+url.PathEscape(name), &v); err != nil {
		if strings.Contains(err.Error(), ": 404: ") {
			return nil, fmt.Errorf("pod %s/%s: not found: the agent at %s holds no attachment of it (see telcnictl pods)", ns, name, a.socket)
		}
		return nil, err
	}
	return &v, nil
}

// label prints one "  label  value" line of the pod view.
func label(w io.Writer, l, format string, args ...any) {
	fmt.Fprintf(w, "  %-11s"+format+"\n", append([]any{l}, args...)...)
}

func writePod(w io.Writer, v *agent.PodView) error {
	fmt.Fprintf(w, "Pod %s/%s", v.Namespace, v.Name)
	if v.UID != "" {
		fmt.Fprintf(w, "  uid %s", v.UID)
	}
	fmt.Fprintln(w)
	for _, at := range v.Attachments {
		fmt.Fprintf(w, "  attachment %s  mode %s  config %s  state %s\n", at.Key, at.Mode, at.ConfigName, at.State)
		label(w, "", "netns %s  created %s", at.Netns, at.Created.Format(time.RFC3339))
	}
	for _, iv := range v.Interfaces {
		fmt.Fprintf(w, "\n%s  network %s  path %s  state %s\n", iv.IfName, iv.Network, iv.Path, iv.State)
		var addrs []string
		for _, ip := range iv.Addresses {
			s := ip.Address.String()
			if ip.Static {
				s += " static"
			}
			if ip.Gateway.IsValid() {
				s += " gw " + ip.Gateway.String()
			}
			addrs = append(addrs, s)
		}
		label(w, "addresses", "%s", dash(strings.Join(addrs, ", ")))
		label(w, "mac", "%s", dash(iv.MAC))
		if l := iv.Link; l != nil {
			state := "down"
			if l.AdminUp {
				state = "up"
			}
			label(w, "link", "%s  ifindex %d  %s  admin %s  oper %s  mtu %d", l.Name, l.Index, l.Kind, state, l.OperState, l.MTU)
			label(w, "alias", "%s", dash(l.Alias))
			if l.HostLink != "" || l.ParentIndex != 0 {
				host := dash(l.HostLink)
				if l.ParentIndex != 0 {
					host += fmt.Sprintf(" (parent ifindex %d)", l.ParentIndex)
				}
				label(w, "host link", "%s", host)
			}
			label(w, "link addrs", "%s", dash(strings.Join(l.Addresses, ", ")))
			for i, r := range l.Routes {
				s := r.Dst
				if r.Gateway != "" {
					s += " via " + r.Gateway
				}
				if r.Src != "" {
					s += " src " + r.Src
				}
				s += " table " + r.Table
				if r.Scope != "" {
					s += " scope " + r.Scope
				}
				if r.Protocol != "" {
					s += " proto " + r.Protocol
				}
				label(w, first(i, "routes"), "%s", s)
			}
			for i, r := range l.Rules {
				s := fmt.Sprintf("%d: ", r.Priority)
				if r.Src != "" {
					s += "from " + r.Src + " "
				}
				label(w, first(i, "rules"), "%slookup %s", s, r.Table)
			}
		}
		if vf := iv.VF; vf != nil {
			label(w, "vf", "PF %s VF %d  pci %s  driver %s", vf.PF, vf.Index, vf.PCI, dash(vf.Driver))
			if vf.PFPCI != "" || vf.HostName != "" {
				label(w, "", "PF pci %s  host netdev %s", dash(vf.PFPCI), dash(vf.HostName))
			}
		}
		if len(iv.Details) > 0 {
			name := "details"
			if iv.Path.IsVPP() {
				name = "vpp"
			}
			for i, line := range detailLines(iv.Details) {
				label(w, first(i, name), "%s", line)
			}
		}
		for _, e := range iv.Errors {
			label(w, "error", "%s", e)
		}
	}
	return nil
}

func first(i int, s string) string {
	if i == 0 {
		return s
	}
	return ""
}

// detailOrder puts the VPP describer's keys in the order a reader wants.
var detailOrder = []string{"name", "swIfIndex", "tag", "kind", "adminUp", "linkUp", "socket", "podSocket", "memifMode",
	"vhostUserPath", "vhostUserPodMode", "bridgeDomain", "l3Table", "counters"}

// detailLines renders a path's details: known keys first, the rest sorted;
// a nested map on one line.
func detailLines(d map[string]any) []string {
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	rank := func(k string) int {
		if i := slices.Index(detailOrder, k); i >= 0 {
			return i
		}
		return len(detailOrder)
	}
	sort.Slice(keys, func(i, j int) bool {
		if ri, rj := rank(keys[i]), rank(keys[j]); ri != rj {
			return ri < rj
		}
		return keys[i] < keys[j]
	})
	var out []string
	for _, k := range keys {
		switch v := d[k].(type) {
		case map[string]any:
			var sub []string
			for _, sk := range sortedKeys(v) {
				sub = append(sub, sk+" "+value(v[sk]))
			}
			out = append(out, k+": "+strings.Join(sub, "  "))
		default:
			out = append(out, k+": "+value(v))
		}
	}
	return out
}

// value prints a detail; JSON numbers arrive as float64 and are integers
// here (indexes, counters).
func value(v any) string {
	if f, ok := v.(float64); ok {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return fmt.Sprint(v)
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// completePods completes NAMESPACE/NAME from the agent's attachments.
func (a *app) completePods(cmd *cobra.Command, argv []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(argv) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), min(a.timeout, 3*time.Second))
	defer cancel()
	var atts []agent.AttachmentView
	if err := a.client().Get(ctx, "/v1/attachments", &atts); err != nil {
		cobra.CompDebugln("telcnictl: "+err.Error(), true)
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	seen := map[string]bool{}
	var out []cobra.Completion
	for _, at := range atts {
		p := at.Pod.Namespace + "/" + at.Pod.Name
		if at.Pod.Name == "" || seen[p] || !strings.HasPrefix(p, toComplete) {
			continue
		}
		seen[p] = true
		out = append(out, p)
	}
	sort.Strings(out)
	return out, cobra.ShellCompDirectiveNoFileComp
}
