// Command telcni is the CNI plugin. It does nothing but forward: each call
// goes, as received, to the telcni agent on the node, and the agent's
// answer is printed. Every decision, lock and piece of state is the agent's.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/telcni/telcni/cni"
)

// callTimeout stays below the runtimes' CNI timeouts (kubelet: 4 min) so
// that the plugin reports the agent's silence itself.
const callTimeout = 3 * time.Minute

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    func(a *skel.CmdArgs) error { return forward("ADD", a) },
		Del:    func(a *skel.CmdArgs) error { return forward("DEL", a) },
		Check:  func(a *skel.CmdArgs) error { return forward("CHECK", a) },
		GC:     func(a *skel.CmdArgs) error { return forward("GC", a) },
		Status: func(a *skel.CmdArgs) error { return forward("STATUS", a) },
	}, version.All, "telcni: telco CNI (forwards to the telcni agent)")
}

func forward(command string, args *skel.CmdArgs) error {
	var conf cni.PluginConf
	if err := json.Unmarshal(args.StdinData, &conf); err != nil {
		return types.NewError(types.ErrDecodingFailure, "decode network config", err.Error())
	}
	socket := conf.Socket()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	reply, err := cni.NewClient(socket, callTimeout).Do(ctx, &cni.Call{
		Command:     command,
		ContainerID: args.ContainerID,
		Netns:       args.Netns,
		IfName:      args.IfName,
		Args:        args.Args,
		Path:        args.Path,
		Config:      args.StdinData,
	})
	if err != nil {
		code := uint(types.ErrTryAgainLater)
		if command == "STATUS" {
			code = 50 // the spec's "plugin not available"
		}
		if errors.Is(err, cni.ErrUnreachable) {
			return types.NewError(code, err.Error(), "") // it names the socket and the cause
		}
		return types.NewError(code, "telcni agent call failed", err.Error())
	}
	if reply.Error != nil {
		return types.NewError(reply.Error.Code, reply.Error.Msg, reply.Error.Details)
	}
	if command == "ADD" {
		if _, err := os.Stdout.Write(reply.Result); err != nil {
			return types.NewError(types.ErrIOFailure, "write result", err.Error())
		}
	}
	return nil
}
