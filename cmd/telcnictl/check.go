package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/telcni/telcni/cni"
)

// CheckResult is one attachment's CHECK outcome.
type CheckResult struct {
	Attachment string   `json:"attachment"`
	Interfaces []string `json:"interfaces"`
	OK         bool     `json:"ok"`
	Code       uint     `json:"code,omitempty"`
	Error      string   `json:"error,omitempty"`
}

func (a *app) checkCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check NAMESPACE/NAME",
		Short: "Run the agent's CNI CHECK for every attachment of a pod and print each difference or ok",
		Long: `check sends a CNI CHECK, as a runtime would, for each attachment of the pod
(through the agent's CNI endpoint, with the recorded container id,
interface and netns) and prints "ok" or the difference the path found
between the record and what exists: a missing link, address or route, a
link that is down or not telcni's, a VPP interface missing or admin down.
A path reports the first difference of an attachment. The exit status is
1 when any attachment differs.`,
		Example: `  telcnictl check ran/du-a
  telcnictl check ran/du-a -o json`,
		Args:              args(cobra.ExactArgs(1)),
		ValidArgsFunction: a.completePods,
		RunE: func(cmd *cobra.Command, argv []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			v, err := a.getPod(ctx, argv[0])
			if err != nil {
				return err
			}
			c := a.client()
			results := []CheckResult{}
			failed := 0
			for _, at := range v.Attachments {
				res := CheckResult{Attachment: at.Key, Interfaces: []string{}}
				for _, iv := range v.Interfaces {
					if iv.Attachment == at.Key {
						res.Interfaces = append(res.Interfaces, iv.IfName)
					}
				}
				version := at.CNIVersion
				if version == "" {
					version = "1.1.0"
				}
				conf, _ := json.Marshal(map[string]string{"cniVersion": version, "name": at.ConfigName, "type": "telcni"})
				reply, err := c.Do(ctx, &cni.Call{Command: "CHECK", ContainerID: at.ContainerID, Netns: at.Netns, IfName: at.IfName,
					Args:   fmt.Sprintf("IgnoreUnknown=1;K8S_POD_NAMESPACE=%s;K8S_POD_NAME=%s;K8S_POD_UID=%s", v.Namespace, v.Name, v.UID),
					Config: conf})
				switch {
				case err != nil:
					return err
				case reply.Error != nil:
					res.Code, res.Error = reply.Error.Code, reply.Error.Error()
					failed++
				default:
					res.OK = true
				}
				results = append(results, res)
			}
			err = a.emit(cmd.OutOrStdout(), results, func(w io.Writer) error {
				tw := newTable(w)
				fmt.Fprintln(tw, "ATTACHMENT\tINTERFACES\tRESULT")
				for _, r := range results {
					out := "ok"
					if !r.OK {
						out = fmt.Sprintf("DIFFERS (CNI code %d): %s", r.Code, r.Error)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Attachment, strings.Join(r.Interfaces, ","), out)
				}
				return tw.Flush()
			})
			if err == nil && failed > 0 {
				err = fmt.Errorf("check %s/%s: %d of %d attachments differ from their record", v.Namespace, v.Name, failed, len(results))
			}
			return err
		},
	}
}
