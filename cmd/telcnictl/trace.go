package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/telcni/telcni/agent"
	"github.com/telcni/telcni/cni"
	"github.com/telcni/telcni/vppagent"
)

func (a *app) vppTraceCmd() *cobra.Command {
	var count int
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "trace NAMESPACE/NAME IFACE",
		Short: "Trace a pod interface's packets through VPP and print them one by one",
		Long: `vpp trace runs a VPP packet trace for one pod interface (memif or
vhostuser) through the agent's VPP connection: the agent clears VPP's trace
buffer, traces the interface kind's input node (memif-input,
vhost-user-input), waits until -n of the interface's packets are traced or
--duration has passed, keeps the packets whose trace names the interface
(its sw_if_index, hw_if_index or name: received on it, or sent to it from
another pod), clears the buffer again and returns them. VPP traces one
thing at a time: a second trace on the same VPP is refused (409) while one
runs.

A first word without "/" is not a pod: "vpp trace add memif-input 10" and
the like go to VPP's CLI as they are.`,
		Example: `  telcnictl vpp trace ran/cnf-0 mif0
  telcnictl vpp trace ran/cnf-0 mif0 -n 3 --duration 30s
  telcnictl -o json vpp trace ran/cnf-0 mif0 -n 1`,
		Args: args(cobra.MinimumNArgs(1)),
		ValidArgsFunction: func(cmd *cobra.Command, argv []string, complete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			if len(argv) == 0 {
				return a.completePods(cmd, argv, complete)
			}
			return nil, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, argv []string) error {
			if !strings.Contains(argv[0], "/") {
				return a.vppCLI(cmd, append([]string{"trace"}, argv...))
			}
			if len(argv) != 2 {
				return usageError{fmt.Errorf("trace: want NAMESPACE/NAME IFACE, got %q", strings.Join(argv, " "))}
			}
			ns, name, err := splitPod(argv[0])
			if err != nil {
				return err
			}
			if count < 1 || wait <= 0 {
				return usageError{fmt.Errorf("trace: -n must be at least 1 and --duration positive")}
			}
			// The agent waits up to --duration: --timeout is on top.
			ctx, cancel := context.WithTimeout(cmd.Context(), wait+a.timeout)
			defer cancel()
			req := agent.TraceRequest{Namespace: ns, Name: name, Interface: argv[1], Count: count, Duration: agent.Duration(wait)}
			var tr vppagent.Trace
			var terr agent.TraceError
			status, err := cni.NewClient(a.socket, wait+a.timeout).Post(ctx, agent.TracePath, req, &struct {
				*vppagent.Trace
				*agent.TraceError
			}{&tr, &terr})
			if err != nil {
				return err
			}
			if status != 200 {
				return fmt.Errorf("vpp trace %s %s: %s", argv[0], argv[1], terr.Error)
			}
			return a.emit(cmd.OutOrStdout(), tr, func(w io.Writer) error { return printTrace(w, argv[0], argv[1], &tr) })
		},
	}
	cmd.Flags().IntVarP(&count, "count", "n", 10, "how many of the interface's packets to wait for")
	cmd.Flags().DurationVarP(&wait, "duration", "d", 10*time.Second, "the longest wait for them (the agent caps it at 5m)")
	return cmd
}

// printTrace prints a trace packet by packet.
func printTrace(w io.Writer, pod, iface string, tr *vppagent.Trace) error {
	fmt.Fprintf(w, "Trace of %s %s: VPP %s (sw_if_index %d, tag %s), node %s\n", pod, iface, tr.Interface, tr.SwIfIndex, tr.Tag, tr.Node)
	switch {
	case tr.Complete:
		fmt.Fprintf(w, "%d packets of %s (VPP traced %d on %s), took %s\n", len(tr.Packets), iface, tr.Traced, tr.Node, tr.Took)
	default:
		fmt.Fprintf(w, "%d of the %d packets asked for arrived in %s (VPP traced %d on %s)\n", len(tr.Packets), tr.Wanted, tr.Took, tr.Traced, tr.Node)
	}
	for _, p := range tr.Packets {
		fmt.Fprintf(w, "\nPacket %d\n", p.Number)
		for _, line := range strings.Split(p.Trace, "\n") {
			fmt.Fprintln(w, "  "+line)
		}
	}
	return nil
}
