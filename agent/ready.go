package agent

import (
	"context"
	"fmt"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/cni"
)

// pathsReady fails STATUS when a network the config can use needs a path
// that is not ready (VPP unreachable): with 50 (not available) when the
// config is a single network of that path (attachment mode), with 51
// (limited connectivity) when other networks can still be served.
func (a *Agent) pathsReady(ctx context.Context, call *cni.Call) error {
	c, err := parseConf(call.Config)
	if err != nil {
		return err
	}
	var only *api.Network
	switch {
	case c.Path != "":
		if only, err = inlineNetwork(call.Config); err != nil {
			return err
		}
	case c.Network != "":
		if only, err = a.lookup(ctx, "network", c.Namespace, c.Namespace, c.Network); err != nil {
			return err
		}
	}
	if only != nil {
		if err := a.pathReady(only); err != nil {
			return attach.Errorf(attach.CodeNotAvailable, "network %s: %v", only.Key(), err)
		}
		return nil
	}
	nets, err := a.networks.Networks(ctx)
	if err != nil {
		return attach.Errorf(attach.CodeNotAvailable, "network definitions unreadable: %v", err)
	}
	for _, n := range nets {
		if err := a.pathReady(n); err != nil {
			return attach.Errorf(attach.CodeLimitedConnectivity, "network %s: %v", n.Key(), err)
		}
	}
	return nil
}

func (a *Agent) pathReady(n *api.Network) error {
	if r, ok := a.paths[n.Path].(attach.Readier); ok {
		return r.ReadyFor(n)
	}
	return nil
}

// retain hands every attach.Retainer path the interface records of ready
// attachments on its networks (see attach.Retainer).
func (a *Agent) retain(ctx context.Context) error {
	byPath := map[attach.Retainer][]*attach.Record{}
	for _, p := range a.paths {
		if r, ok := p.(attach.Retainer); ok {
			byPath[r] = nil
		}
	}
	if len(byPath) == 0 {
		return nil
	}
	err := a.forEachRecord(func(rec *Attachment) {
		if rec.State != StateReady {
			return
		}
		for i := range rec.Interfaces {
			r := &rec.Interfaces[i]
			if r.Network == nil {
				continue
			}
			if p, ok := a.paths[r.Network.Path].(attach.Retainer); ok {
				byPath[p] = append(byPath[p], r)
			}
		}
	})
	if err != nil {
		return fmt.Errorf("recover: read records: %w", err)
	}
	for p, recs := range byPath {
		if err := p.Retain(ctx, recs); err != nil {
			return fmt.Errorf("recover: %w", err)
		}
	}
	return nil
}
