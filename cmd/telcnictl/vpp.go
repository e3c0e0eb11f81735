package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/telcni/telcni/vppagent"
)

func (a *app) vppCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vpp COMMAND...",
		Short: "Pass a command to VPP's CLI through the agent's VPP connection, as vppctl does",
		Long: `vpp sends the rest of the command line to VPP's debug CLI through the
agent's own VPP connection (no access to VPP's CLI socket is needed) and
prints VPP's answer. Everything after "vpp" is VPP's, flags included; give
telcnictl's own flags before it. -o json|yaml wraps the answer as
{"output": ...}. The agent answers 503 while VPP is down.

"vpp trace NAMESPACE/NAME IFACE" traces one pod interface's packets
instead (see telcnictl vpp trace --help).`,
		Example: `  telcnictl vpp show interface
  telcnictl vpp show memif
  telcnictl --socket /run/telcni/agent.sock vpp show errors
  telcnictl vpp show trace max 5
  telcnictl vpp trace ran/cnf-0 mif0 -n 5`,
		Args: args(cobra.MinimumNArgs(1)),
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
			return nil, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, argv []string) error { return a.vppCLI(cmd, argv) },
	}
	// Flags after the first word of the VPP command are VPP's.
	cmd.Flags().SetInterspersed(false)
	cmd.AddCommand(a.vppTraceCmd())
	return cmd
}

// vppCLI passes argv to VPP's CLI through the agent and prints the answer.
func (a *app) vppCLI(cmd *cobra.Command, argv []string) error {
	ctx, cancel := a.ctx(cmd)
	defer cancel()
	command := strings.Join(argv, " ")
	var reply vppagent.CLIReply
	status, err := a.client().Post(ctx, vppagent.CLIPath, vppagent.CLIRequest{Command: command}, &reply)
	if err != nil {
		return err
	}
	if a.output != "table" {
		if err := a.emit(cmd.OutOrStdout(), reply, nil); err != nil {
			return err
		}
	} else {
		fmt.Fprint(cmd.OutOrStdout(), reply.Output)
	}
	if status != 200 {
		return fmt.Errorf("vpp %q: %s", command, reply.Error)
	}
	return nil
}
