package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/telcni/telcni/agent"
)

// audit is ipam --audit.
func (a *app) audit(cmd *cobra.Command) error {
	ctx, cancel := a.ctx(cmd)
	defer cancel()
	var rep agent.AuditReport
	if err := a.client().Get(ctx, agent.AuditPath, &rep); err != nil {
		return err
	}
	if rep.Interfaces == nil {
		rep.Interfaces = []agent.AuditInterface{}
	}
	if rep.Orphans == nil {
		rep.Orphans = []agent.AuditOrphan{}
	}
	err := a.emit(cmd.OutOrStdout(), rep, func(w io.Writer) error {
		tw := newTable(w)
		fmt.Fprintln(tw, "POD\tATTACHMENT\tIFACE\tNETWORK\tPATH\tADDRESSES\tSTATE\tREASON")
		for _, in := range rep.Interfaces {
			var addrs []string
			for _, ad := range in.Addresses {
				addrs = append(addrs, ad.String())
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", in.Pod, in.Attachment, in.IfName, in.Network, in.Path,
				dash(strings.Join(addrs, ",")), strings.ToUpper(in.State), dash(in.Reason))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if len(rep.Orphans) > 0 {
			fmt.Fprintln(w, "\nOrphans (no record owns them):")
			tw = newTable(w)
			fmt.Fprintln(tw, "KIND\tWHERE\tWHAT")
			for _, o := range rep.Orphans {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", o.Kind, o.Where, o.What)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
		}
		fmt.Fprintf(w, "(%d interfaces recorded, %d leaks, %d orphans)\n", len(rep.Interfaces), rep.Leaks, len(rep.Orphans))
		return nil
	})
	if err == nil && rep.Leaks+len(rep.Orphans) > 0 {
		err = fmt.Errorf("ipam audit: %d leaks, %d orphans (telcnictl gc shows what the agent frees of attachments whose netns is gone)", rep.Leaks, len(rep.Orphans))
	}
	return err
}

func (a *app) gcCmd() *cobra.Command {
	var apply bool
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "List (or, with --apply, free) the attachments whose pod netns is gone",
		Long: `gc asks the agent which attachments belong to a pod whose network namespace
is gone (the pod died and no DEL came): the netns file no longer exists
or is no longer a namespace. By default it is a dry run and only lists
them, with their interfaces and the addresses they hold. With --apply the
agent frees each one as a DEL would (what is left of its interfaces is
detached, its addresses and record freed), checking again under the
attachment's lock first. Attachments of an ADD in flight are never touched.`,
		Example: `  telcnictl gc
  telcnictl gc --apply
  telcnictl gc -o json`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			var rep agent.GCReport
			status, err := a.client().Post(ctx, agent.GCPath, agent.GCRequest{Apply: apply}, &rep)
			if err != nil {
				return err
			}
			if status != 200 {
				return fmt.Errorf("gc: agent answered %d", status)
			}
			if rep.Attachments == nil {
				rep.Attachments = []agent.GCCandidate{}
			}
			failed := 0
			for _, c := range rep.Attachments {
				if apply && !c.Freed {
					failed++
				}
			}
			err = a.emit(cmd.OutOrStdout(), rep, func(w io.Writer) error {
				tw := newTable(w)
				fmt.Fprintln(tw, "ATTACHMENT\tPOD\tINTERFACES\tADDRESSES\tREASON\tRESULT")
				for _, c := range rep.Attachments {
					var addrs []string
					for _, ad := range c.Addresses {
						addrs = append(addrs, ad.String())
					}
					result := "would be freed"
					switch {
					case c.Freed:
						result = "freed"
					case c.Error != "":
						result = "not freed: " + c.Error
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Attachment, c.Pod, strings.Join(c.Interfaces, ","),
						dash(strings.Join(addrs, ",")), c.Reason, result)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				switch n := len(rep.Attachments); {
				case n == 0:
					fmt.Fprintln(w, "(no attachment has lost its netns)")
				case !apply:
					fmt.Fprintf(w, "(dry run: %d attachments would be freed; telcnictl gc --apply frees them)\n", n)
				default:
					fmt.Fprintf(w, "(%d of %d attachments freed)\n", n-failed, n)
				}
				return nil
			})
			if err == nil && failed > 0 {
				err = fmt.Errorf("gc: %d of %d attachments not freed", failed, len(rep.Attachments))
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&apply, "apply", false, "free them (default: a dry run that only lists them)")
	return cmd
}
