package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/telcni/telcni/agent"
	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/ipam"
)

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

func (a *app) podsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "pods",
		Short: "One line per pod interface: pod, container, interface, network, path, addresses, MAC, state",
		Long: `pods lists every interface of every attachment the agent holds: the pod
(NAMESPACE/NAME), the first 12 characters of the container id, the interface
name in the pod, the network, its path, the addresses, the MAC and the
attachment's state (ready, or pending while an ADD runs).`,
		Example: `  telcnictl pods
  telcnictl pods -o json | jq '.[].interfaces[].ips'`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			var atts []agent.AttachmentView
			if err := a.client().Get(ctx, "/v1/attachments", &atts); err != nil {
				return err
			}
			sort.Slice(atts, func(i, j int) bool {
				x, y := atts[i], atts[j]
				if x.Pod.Namespace+"/"+x.Pod.Name != y.Pod.Namespace+"/"+y.Pod.Name {
					return x.Pod.Namespace+"/"+x.Pod.Name < y.Pod.Namespace+"/"+y.Pod.Name
				}
				return x.Key < y.Key
			})
			if atts == nil {
				atts = []agent.AttachmentView{}
			}
			return a.emit(cmd.OutOrStdout(), atts, func(w io.Writer) error {
				tw := newTable(w)
				fmt.Fprintln(tw, "POD\tCONTAINER\tIFACE\tNETWORK\tPATH\tADDRESSES\tMAC\tSTATE")
				for _, at := range atts {
					for _, r := range at.Interfaces {
						var ips []string
						for _, ip := range r.IPs {
							ips = append(ips, ip.Address.String())
						}
						fmt.Fprintf(tw, "%s/%s\t%.12s\t%s\t%s\t%s\t%s\t%s\t%s\n", at.Pod.Namespace, at.Pod.Name, at.ContainerID, r.IfName,
							r.Network.Key(), r.Network.Path, dash(strings.Join(ips, ",")), dash(r.Interface.MAC), at.State)
					}
				}
				return tw.Flush()
			})
		},
	}
}

func (a *app) ipamCmd() *cobra.Command {
	var audit bool
	cmd := &cobra.Command{
		Use:   "ipam",
		Short: "One line per held address: network, address, kind (static or dynamic), holder",
		Long: `ipam lists every address the agent's IPAM holds, by network and address,
with whether the pod asked for it (static) or IPAM chose it (dynamic), and
its holder: pod, container id and interface.

With --audit it compares the agent's records with the live world instead:
each recorded interface's netns exists, its link exists with telcni's
alias (kernel paths), its VPP interface exists (memif, vhostuser); and it
lists leaks (addresses held for an interface that is gone) and orphans
(held addresses no record owns, links with a telcni alias in a pod netns
no record owns, telcni-tagged VPP pod interfaces no record owns). It
changes nothing; the exit status is 1 when it finds a leak or an orphan.
"telcnictl gc" frees the attachments whose netns is gone.`,
		Example: `  telcnictl ipam
  telcnictl ipam -o yaml
  telcnictl ipam --audit
  telcnictl ipam --audit -o json | jq '.interfaces[] | select(.state=="leak")'`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if audit {
				return a.audit(cmd)
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			var all []ipam.Allocation
			if err := a.client().Get(ctx, "/v1/allocations", &all); err != nil {
				return err
			}
			sort.Slice(all, func(i, j int) bool {
				if all[i].Network != all[j].Network {
					return all[i].Network < all[j].Network
				}
				return all[i].Address.Less(all[j].Address)
			})
			if all == nil {
				all = []ipam.Allocation{}
			}
			return a.emit(cmd.OutOrStdout(), all, func(w io.Writer) error {
				tw := newTable(w)
				fmt.Fprintln(tw, "NETWORK\tADDRESS\tKIND\tHOLDER")
				for _, al := range all {
					kind := "dynamic"
					if al.Holder.Static {
						kind = "static"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", al.Network, al.Address, kind, al.Holder)
				}
				fmt.Fprintf(tw, "(%d addresses held)\n", len(all))
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&audit, "audit", false, "compare the records with the live world: list leaks and orphans")
	return cmd
}

func (a *app) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "The NPWG network-status of every attachment (JSON unless -o yaml)",
		Long: `status prints, for every attachment, the k8s.v1.cni.cncf.io/network-status
the agent reports for it (in a cluster it is also written onto the pod),
keyed "NAMESPACE/NAME (CONTAINER/IFNAME)". The table format is JSON.`,
		Example: `  telcnictl status
  telcnictl status -o yaml`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			var atts []agent.AttachmentView
			if err := a.client().Get(ctx, "/v1/attachments", &atts); err != nil {
				return err
			}
			out := map[string]any{}
			for _, at := range atts {
				out[at.Pod.Namespace+"/"+at.Pod.Name+" ("+at.Key+")"] = at.NetworkStatus
			}
			return a.emit(cmd.OutOrStdout(), out, func(w io.Writer) error { return writeJSON(w, out) })
		},
	}
}

func (a *app) networksCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "networks",
		Short: "Network definitions with their path, the pods attached and the addresses used",
		Long: `networks lists every network the agent's network source defines (the
networks directory, or NetworkAttachmentDefinitions in a cluster), and any
network whose definition is gone while records still use it (DEFINED no):
the path, the host device (master or shared VLAN/VXLAN link), the subnets,
the pods attached on this node and the addresses IPAM holds in it.`,
		Example: `  telcnictl networks
  telcnictl networks -o json | jq '.[] | select(.path=="memif")'`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			var nets []agent.NetworkView
			if err := a.client().Get(ctx, agent.NetworksPath, &nets); err != nil {
				return err
			}
			if nets == nil {
				nets = []agent.NetworkView{}
			}
			return a.emit(cmd.OutOrStdout(), nets, func(w io.Writer) error {
				tw := newTable(w)
				fmt.Fprintln(tw, "NETWORK\tPATH\tDEFINED\tHOST\tSUBNETS\tPODS\tADDRESSES")
				for _, n := range nets {
					defined, host, subnets := "yes", "", []string{}
					if !n.Defined {
						defined = "no"
					}
					if d := n.Definition; d != nil {
						host = hostOf(d)
						for _, s := range d.IPAM.Subnets {
							subnets = append(subnets, s.CIDR)
						}
					}
					pods := map[string]bool{}
					var podList []string
					for _, p := range n.Pods {
						name, _, _ := strings.Cut(p, " ")
						if !pods[name] {
							pods[name] = true
							podList = append(podList, name)
						}
					}
					var addrs []string
					for _, ad := range n.Addresses {
						addrs = append(addrs, ad.String())
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Key, n.Path, defined, dash(host),
						dash(strings.Join(subnets, ",")), dash(strings.Join(podList, ",")), dash(strings.Join(addrs, ",")))
				}
				return tw.Flush()
			})
		},
	}
}

// hostOf is the host side of a network in one word.
func hostOf(n *api.Network) string {
	switch {
	case n.Path.IsVPP():
		return "vpp"
	case n.Path == api.PathVLAN && n.Master != "":
		return fmt.Sprintf("%s vlan %d", n.Master, n.VLAN)
	case n.Path == api.PathVXLAN && n.VXLAN != nil:
		return fmt.Sprintf("vxlan %d", n.VXLAN.VNI)
	}
	return n.Master
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
