// Command telcnictl is telcni's debugging CLI, in the spirit of vppctl:
// it asks the node agent what it has made and prints it for humans.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/telcni/telcni/agent"
	"github.com/telcni/telcni/cni"
	"github.com/telcni/telcni/ipam"
	"github.com/telcni/telcni/vppagent"
)

const usage = `usage: telcnictl [-socket PATH] COMMAND

commands:
  pods      one line per pod interface: pod, container, interface, network, path, addresses, MAC
  ipam      one line per held address: network, address, holder
  status    the NPWG network-status of every attachment, as JSON
  vpp CMD   a VPP CLI command through the agent's VPP connection (as vppctl), e.g. "vpp show interface"
`

func main() {
	socket := flag.String("socket", cni.DefaultSocket, "the agent's unix socket")
	flag.Usage = func() { fmt.Fprint(os.Stderr, usage); flag.PrintDefaults() }
	flag.Parse()
	if flag.NArg() < 1 || flag.Arg(0) != "vpp" && flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := cni.NewClient(*socket, 10*time.Second)
	var err error
	switch flag.Arg(0) {
	case "pods":
		err = pods(ctx, c, os.Stdout)
	case "ipam":
		err = allocations(ctx, c, os.Stdout)
	case "status":
		err = status(ctx, c, os.Stdout)
	case "vpp":
		err = vppCLI(ctx, c, os.Stdout, strings.Join(flag.Args()[1:], " "))
	default:
		flag.Usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "telcnictl:", err)
		os.Exit(1)
	}
}

func pods(ctx context.Context, c *cni.Client, w io.Writer) error {
	var atts []agent.AttachmentView
	if err := c.Get(ctx, "/v1/attachments", &atts); err != nil {
		return err
	}
	sort.Slice(atts, func(i, j int) bool { return atts[i].Pod.Name+atts[i].Key < atts[j].Pod.Name+atts[j].Key })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POD\tCONTAINER\tIFACE\tNETWORK\tPATH\tADDRESSES\tMAC\tSTATE")
	for _, a := range atts {
		for _, r := range a.Interfaces {
			var ips []string
			for _, ip := range r.IPs {
				ips = append(ips, ip.Address.String())
			}
			fmt.Fprintf(tw, "%s/%s\t%.12s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.Pod.Namespace, a.Pod.Name, a.ContainerID, r.IfName,
				r.Network.Key(), r.Network.Path, strings.Join(ips, ","), r.Interface.MAC, a.State)
		}
	}
	return tw.Flush()
}

func allocations(ctx context.Context, c *cni.Client, w io.Writer) error {
	var all []ipam.Allocation
	if err := c.Get(ctx, "/v1/allocations", &all); err != nil {
		return err
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].Network != all[j].Network {
			return all[i].Network < all[j].Network
		}
		return all[i].Address.Less(all[j].Address)
	})
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NETWORK\tADDRESS\tKIND\tHOLDER")
	for _, a := range all {
		kind := "dynamic"
		if a.Holder.Static {
			kind = "static"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.Network, a.Address, kind, a.Holder)
	}
	fmt.Fprintf(tw, "(%d addresses held)\n", len(all))
	return tw.Flush()
}

func status(ctx context.Context, c *cni.Client, w io.Writer) error {
	var atts []agent.AttachmentView
	if err := c.Get(ctx, "/v1/attachments", &atts); err != nil {
		return err
	}
	out := map[string]any{}
	for _, a := range atts {
		out[a.Pod.Namespace+"/"+a.Pod.Name+" ("+a.Key+")"] = a.NetworkStatus
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func vppCLI(ctx context.Context, c *cni.Client, w io.Writer, command string) error {
	if command == "" {
		return fmt.Errorf("vpp: which command? e.g. telcnictl vpp show interface")
	}
	var reply vppagent.CLIReply
	status, err := c.Post(ctx, vppagent.CLIPath, vppagent.CLIRequest{Command: command}, &reply)
	if err != nil {
		return err
	}
	fmt.Fprint(w, reply.Output)
	if status != 200 {
		return fmt.Errorf("vpp %q: %s", command, reply.Error)
	}
	return nil
}
