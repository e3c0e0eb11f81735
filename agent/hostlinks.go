package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
)

// SyncHostLinks brings the node's host links (VLAN, VXLAN) in line with
// the defined networks and the attachment records: a link exists while its
// network is defined or any pod still uses it. The records are the
// reference count, so an agent restart counts right.
func (a *Agent) SyncHostLinks(ctx context.Context) error {
	var errs []error
	seen := map[attach.HostLinkSyncer]bool{}
	for _, p := range a.paths {
		s, ok := p.(attach.HostLinkSyncer)
		if !ok || seen[s] {
			continue
		}
		seen[s] = true
		errs = append(errs, s.SyncHostLinks(ctx, func() ([]*api.Network, error) { return a.networksInUse(ctx) }))
	}
	return errors.Join(errs...)
}

// networksInUse is every defined network plus every network a record
// holds. When the definitions cannot be read, nothing may be removed, so
// the error aborts the sync.
func (a *Agent) networksInUse(ctx context.Context) ([]*api.Network, error) {
	defined, err := a.networks.Networks(ctx)
	if err != nil {
		return nil, fmt.Errorf("read network definitions: %w", err)
	}
	out := slices.Clone(defined)
	err = a.forEachRecord(func(rec *Attachment) {
		for _, r := range rec.Interfaces {
			out = append(out, r.Network)
		}
	})
	return out, err
}

// checkUnchanged refuses a network whose definition changed, in a way that
// would break them, under pods still attached to the old one: a new pod on
// VLAN 200 beside old pods on VLAN 100 would silently split the network.
// One pass over the records serves every network of the plan.
func (a *Agent) checkUnchanged(p *plan) error {
	planned := map[string]*api.Network{}
	for _, ip := range p.ifaces {
		planned[ip.network.Key()] = ip.network
	}
	var pods []string
	var key, diff string
	err := a.forEachRecord(func(rec *Attachment) {
		if rec.Key == p.key {
			return // the pod's own earlier attempt: it is being redone
		}
		for _, r := range rec.Interfaces {
			n, ok := planned[r.Network.Key()]
			if !ok {
				continue
			}
			if d := breakingChange(r.Network, n); d != "" && (key == "" || key == n.Key()) {
				key, diff = n.Key(), d
				pods = append(pods, rec.Pod.Namespace+"/"+rec.Pod.Name+" ("+rec.ContainerID+")")
			}
		}
	})
	if err != nil {
		return attach.Errorf(attach.CodeIOFailure, "read records: %v", err)
	}
	if len(pods) > 0 {
		err := attach.Errorf(attach.CodeInvalidConfig, "network %s: its definition changed (%s) while pods are attached to the old one: %s; the change is refused until they leave",
			key, diff, strings.Join(pods, ", "))
		if r, ok := a.networks.(api.ChangeReporter); ok {
			r.NetworkRefused(key, err.Error())
		}
		return err
	}
	return nil
}

// breakingChange describes a change of path, master, VLAN or VXLAN between
// two definitions of one network, or returns "".
func breakingChange(old, cur *api.Network) string {
	switch {
	case old.Path != cur.Path:
		return fmt.Sprintf("path %s -> %s", old.Path, cur.Path)
	case old.Master != cur.Master:
		return fmt.Sprintf("master %s -> %s", old.Master, cur.Master)
	case old.VLAN != cur.VLAN:
		return fmt.Sprintf("vlan %d -> %d", old.VLAN, cur.VLAN)
	case (old.VXLAN == nil) != (cur.VXLAN == nil) || old.VXLAN != nil && *old.VXLAN != *cur.VXLAN:
		return "vxlan settings"
	}
	return ""
}

// Run keeps host links in line with network definitions as they are added,
// changed and removed, and in a cluster frees the attachments of pods that
// are gone without a DEL, every interval until ctx ends.
func (a *Agent) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := a.SyncHostLinks(ctx); err != nil {
			a.log.Warn("host link sync", "err", err)
		}
		if _, err := a.freeGonePods(ctx); err != nil {
			a.log.Warn("freeing attachments of gone pods", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
