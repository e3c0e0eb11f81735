package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/cni"
	"github.com/telcni/telcni/ipam"
)

// Check verifies that every recorded interface still exists as recorded.
func (a *Agent) Check(ctx context.Context, call *cni.Call) error {
	if err := requireEnv(call, true); err != nil {
		return err
	}
	key := recordKey(call.ContainerID, call.IfName)
	unlock := a.locks.lock(key)
	defer unlock()
	rec, err := a.get(key)
	if errors.Is(err, ipam.ErrNoRecord) {
		return attach.Errorf(attach.CodeUnknownContainer, "no attachment for container %s interface %s", call.ContainerID, call.IfName)
	}
	if err != nil {
		return attach.Errorf(attach.CodeIOFailure, "read attachment %s: %v", key, err)
	}
	if rec.State != StateReady {
		return attach.Errorf(attach.CodeCheckFailed, "attachment %s is %s, not ready", key, rec.State)
	}
	for i := range rec.Interfaces {
		r := &rec.Interfaces[i]
		path, err := a.path(r.Network)
		if err != nil {
			return err
		}
		if err := path.Check(ctx, r); err != nil {
			return attach.WithCode(attach.CodeOf(err), fmt.Errorf("interface %s (network %s): %w", r.IfName, r.Network.Key(), err))
		}
	}
	return nil
}

// GC frees every attachment made through the named config that is not in
// the runtime's list of valid attachments (CNI 1.1 cni.dev/valid-attachments).
func (a *Agent) GC(ctx context.Context, call *cni.Call) error {
	c, err := parseConf(call.Config)
	if err != nil {
		return err
	}
	valid := map[string]bool{}
	for _, v := range c.ValidAttachments {
		valid[recordKey(v.ContainerID, v.IfName)] = true
	}
	var stale []string
	err = a.forEachRecord(func(rec *Attachment) {
		if rec.ConfigName == c.Name && !valid[rec.Key] {
			stale = append(stale, rec.Key)
		}
	})
	if err != nil {
		return attach.Errorf(attach.CodeIOFailure, "GC: read records: %v", err)
	}
	for _, key := range stale {
		if _, err := a.delKey(ctx, key); err != nil {
			return err
		}
	}
	if len(stale) > 0 {
		a.log.Info("GC", "config", c.Name, "freed", len(stale))
	}
	if err := a.SyncHostLinks(ctx); err != nil {
		a.log.Warn("host link sync after GC", "err", err)
	}
	return nil
}

// Status reports whether the agent can serve ADDs: its store and network
// source answer.
func (a *Agent) Status(ctx context.Context, call *cni.Call) error {
	if _, err := a.networks.Networks(ctx); err != nil {
		return attach.Errorf(attach.CodeNotAvailable, "network definitions unreadable: %v", err)
	}
	if err := a.store.View(func(*ipam.Tx) error { return nil }); err != nil {
		return attach.Errorf(attach.CodeNotAvailable, "state store: %v", err)
	}
	return a.pathsReady(ctx, call)
}
