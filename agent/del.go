package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/cni"
	"github.com/telcni/telcni/ipam"
)

// Del removes an attachment. It is idempotent: an unknown container, a
// second DEL, or a netns that is already gone all succeed, and whatever is
// recorded is freed.
func (a *Agent) Del(ctx context.Context, call *cni.Call) error {
	if err := requireEnv(call, false); err != nil {
		return err
	}
	rec, err := a.delKey(ctx, recordKey(call.ContainerID, call.IfName))
	if err != nil {
		return err
	}
	// Only a pod that used a shared host link can have left one unused;
	// the periodic sync catches definitions that changed meanwhile.
	if rec != nil && usedHostLink(rec) {
		if err := a.SyncHostLinks(ctx); err != nil {
			a.log.Warn("host link sync after DEL", "err", err)
		}
	}
	return nil
}

// delKey removes the attachment recorded under key, if any, and returns
// what it removed (nil: nothing was recorded).
func (a *Agent) delKey(ctx context.Context, key string) (*Attachment, error) {
	unlock := a.locks.lock(key)
	defer unlock()
	rec, err := a.get(key)
	if errors.Is(err, ipam.ErrNoRecord) {
		return nil, nil
	}
	if err != nil {
		return nil, attach.Errorf(attach.CodeIOFailure, "read attachment %s: %v", key, err)
	}
	if err := a.teardown(ctx, rec, true); err != nil {
		return nil, err
	}
	a.notifyChanged()
	a.log.Info("DEL", "container", rec.ContainerID, "pod", rec.Pod.Namespace+"/"+rec.Pod.Name, "interfaces", len(rec.Interfaces))
	return rec, nil
}

func usedHostLink(rec *Attachment) bool {
	for _, r := range rec.Interfaces {
		if r.Network.Path == api.PathVLAN || r.Network.Path == api.PathVXLAN {
			return true
		}
	}
	return false
}

func (a *Agent) get(key string) (*Attachment, error) {
	var rec Attachment
	err := a.store.View(func(tx *ipam.Tx) error { return tx.GetRecord(key, &rec) })
	if err != nil {
		return nil, err
	}
	return &rec, nil
}

// teardown detaches every interface of rec and then frees its addresses
// and record in one transaction. A detach failure is logged, not fatal:
// leaving the addresses held for a pod that is going away is how IPAM leaks
// start (see ANCHORS: DANM), and the links die with the pod's netns anyway.
func (a *Agent) teardown(ctx context.Context, rec *Attachment, all bool) error {
	if all {
		a.detachAll(ctx, rec)
	} else {
		a.detachMade(ctx, rec)
	}
	if err := a.release(rec); err != nil {
		return err
	}
	a.releaseStatics(ctx, rec)
	return nil
}

func (a *Agent) release(rec *Attachment) error {
	err := a.store.Update(func(tx *ipam.Tx) error {
		for _, r := range rec.Interfaces {
			h := ipam.Holder{ContainerID: rec.ContainerID, IfName: r.IfName}
			if _, err := tx.Release(r.Network.Key(), h); err != nil {
				return fmt.Errorf("release %s: %w", r.IfName, err)
			}
		}
		return tx.DeleteRecord(rec.Key)
	})
	if err != nil {
		return attach.Errorf(attach.CodeIOFailure, "free attachment %s: %v", rec.Key, err)
	}
	return nil
}

// detachAll detaches every recorded interface (a DEL, or a restart found
// the record pending: any of them may exist).
func (a *Agent) detachAll(ctx context.Context, rec *Attachment) {
	a.detach(ctx, rec, func(*attach.Record) bool { return true })
}

// detachMade detaches only the interfaces this process made (a failed ADD
// knows exactly which).
func (a *Agent) detachMade(ctx context.Context, rec *Attachment) {
	a.detach(ctx, rec, func(r *attach.Record) bool { return r.Interface.Name != "" })
}

// detach detaches rec's interfaces that pick selects: those of a path that
// removes several at once (attach.BatchDetacher) together, the others one
// by one.
func (a *Agent) detach(ctx context.Context, rec *Attachment, pick func(*attach.Record) bool) {
	batches := map[attach.BatchDetacher][]*attach.Record{}
	var order []attach.BatchDetacher
	for i := range rec.Interfaces {
		r := &rec.Interfaces[i]
		if !pick(r) {
			continue
		}
		if p, err := a.path(r.Network); err == nil {
			if bd, ok := p.(attach.BatchDetacher); ok {
				if _, seen := batches[bd]; !seen {
					order = append(order, bd)
				}
				batches[bd] = append(batches[bd], r)
				continue
			}
		}
		a.detachOne(ctx, rec, r)
	}
	for _, bd := range order {
		dctx, cancel := context.WithTimeout(ctx, a.timeout)
		err := bd.DetachAll(dctx, batches[bd])
		cancel()
		if err != nil {
			a.log.Warn("detach failed; freeing its addresses anyway", "container", rec.ContainerID, "interfaces", len(batches[bd]), "err", err)
		}
	}
}

func (a *Agent) detachOne(ctx context.Context, rec *Attachment, r *attach.Record) {
	path, err := a.path(r.Network)
	if err == nil {
		dctx, cancel := context.WithTimeout(ctx, a.timeout)
		err = path.Detach(dctx, r)
		cancel()
	}
	if err != nil {
		a.log.Warn("detach failed; freeing its addresses anyway", "container", rec.ContainerID, "ifname", r.IfName, "err", err)
	}
}
