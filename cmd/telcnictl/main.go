// Command telcnictl is telcni's debugging CLI, in the spirit of vppctl:
// it asks the node agent what it has made and what stands behind it, and
// prints it for humans (tables) or programs (-o json|yaml).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/telcni/telcni/cni"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command line and returns the exit status: 0, 1 when the
// command failed, 2 for a usage error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot()
	root.SetArgs(longFlags(args))
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "telcnictl:", err)
	var ue usageError
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") {
		fmt.Fprintln(stderr, "Run 'telcnictl --help' for usage.")
		return 2
	}
	return 1
}

// longFlags accepts the Go flag package's single-dash long flags the
// first telcnictl took (-socket PATH, as scripts/demo.sh and the e2e tests
// call it) by rewriting them to --socket; a VPP command's own words, after
// "vpp", are left alone.
func longFlags(args []string) []string {
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "vpp" || a == "--" {
			return append(out, args[i:]...)
		}
		for _, f := range []string{"socket", "timeout", "output"} {
			if a == "-"+f || strings.HasPrefix(a, "-"+f+"=") {
				a = "-" + a
			}
		}
		out = append(out, a)
	}
	return out
}

// usageError marks errors in how telcnictl was called (exit status 2).
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// app holds the global flags every command shares.
type app struct {
	socket  string
	output  string
	timeout time.Duration
}

var outputs = []string{"table", "json", "yaml"}

func newRoot() *cobra.Command {
	a := &app{}
	root := &cobra.Command{
		Use:   "telcnictl",
		Short: "Debug telcni: what the node agent made for each pod, and what stands behind it",
		Long: `telcnictl asks the telcni agent on this node, over its root-only unix socket,
what it has made: pods and their interfaces with the kernel links, VPP
interfaces or SR-IOV VFs behind them, networks and who uses them, held
addresses, and audit the records against the live world (ipam --audit). It
can run the agent's CNI CHECK for a pod, free attachments whose netns is
gone (gc --apply), trace a pod interface's packets in VPP (vpp trace) and
pass commands to VPP's CLI through the agent, as vppctl does.`,
		Example: `  telcnictl pods
  telcnictl pod ran/du-a
  telcnictl pod ran/du-a -o yaml
  telcnictl --socket /tmp/agent.sock networks
  telcnictl check ran/du-a
  telcnictl ipam --audit
  telcnictl gc
  telcnictl vpp show interface
  telcnictl vpp trace ran/cnf-0 mif0 -n 5
  source <(telcnictl completion bash)`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if !slices.Contains(outputs, a.output) {
				return usageError{fmt.Errorf("-o %q: want one of %s", a.output, strings.Join(outputs, ", "))}
			}
			return nil
		},
	}
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&a.socket, "socket", cni.DefaultSocket, "the agent's unix socket")
	pf.StringVarP(&a.output, "output", "o", "table", "output format: "+strings.Join(outputs, ", "))
	pf.DurationVar(&a.timeout, "timeout", 10*time.Second, "how long to wait for the agent")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(outputs, cobra.ShellCompDirectiveNoFileComp))

	root.AddCommand(a.podsCmd(), a.podCmd(), a.networksCmd(), a.ipamCmd(), a.gcCmd(), a.statusCmd(), a.checkCmd(), a.vppCmd(), completionCmd())
	root.InitDefaultHelpCmd()
	for _, c := range root.Commands() {
		if c.Name() == "help" {
			c.Example = "  telcnictl help pod\n  telcnictl pod --help"
		}
	}
	return root
}

// client is a client of the agent at --socket.
func (a *app) client() *cni.Client { return cni.NewClient(a.socket, a.timeout) }

// ctx bounds one command by --timeout.
func (a *app) ctx(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), a.timeout)
}

// emit prints v as -o asks: JSON, YAML, or the command's table.
func (a *app) emit(w io.Writer, v any, table func(io.Writer) error) error {
	switch a.output {
	case "json":
		return writeJSON(w, v)
	case "yaml":
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	return table(w)
}

// args wraps a cobra argument check so that its error is a usage error.
func args(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{fmt.Errorf("%s: %w", cmd.Name(), err)}
		}
		return nil
	}
}

// splitPod parses NS/NAME.
func splitPod(s string) (ns, name string, err error) {
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return "", "", usageError{fmt.Errorf("pod %q: want NAMESPACE/NAME, e.g. ran/du-a", s)}
	}
	return ns, name, nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
