package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/cni"
	"github.com/telcni/telcni/ipam"
)

// Add makes every interface of the call, or nothing: an ADD that fails
// part-way undoes what it did (links, addresses, record) and returns the
// first cause.
func (a *Agent) Add(ctx context.Context, call *cni.Call) (*Attachment, error) {
	ph := newPhases()
	defer ph.log(a.log, "ADD", call.ContainerID)
	if err := requireEnv(call, true); err != nil {
		return nil, err
	}
	c, err := parseConf(call.Config)
	if err != nil {
		return nil, err
	}
	ph.done("parse")
	p, err := a.resolve(ctx, call, c)
	if err != nil {
		return nil, err
	}
	ph.done("resolve")
	unlock := a.locks.lock(p.key)
	defer unlock()
	ph.done("lock")

	// A repeated ADD (a runtime retrying) first removes the links of the
	// earlier attempt but keeps its addresses, so the retry gets them back.
	prev, err := a.get(p.key)
	if err == nil {
		a.detachAll(ctx, prev)
	} else {
		prev = nil
	}

	rec, err := a.reserveCluster(ctx, call, p, prev)
	if err != nil {
		return nil, err
	}
	ph.done("reserve")
	// The rollback does not end with the caller: a runtime that gave up
	// is often why the ADD failed, and what it made must still go.
	rollback := func() {
		uctx, cancel := attach.UndoContext(ctx)
		defer cancel()
		if terr := a.teardown(uctx, rec, false); terr != nil {
			a.log.Error("ADD rollback incomplete", "container", rec.ContainerID, "err", terr)
		}
	}
	if err := a.attachAll(ctx, rec); err != nil {
		rollback()
		return nil, err
	}
	ph.done("attach")
	if err := a.enforceAtAdd(ctx, rec); err != nil {
		rollback()
		return nil, err
	}
	ph.done("policy")
	rec.State = StateReady
	if err := a.store.Batch(func(tx *ipam.Tx) error { return tx.PutRecord(rec.Key, rec) }); err != nil {
		uctx, cancel := attach.UndoContext(ctx)
		defer cancel()
		a.detachAll(uctx, rec)
		_ = a.release(rec)
		return nil, attach.Errorf(attach.CodeIOFailure, "record attachment %s: %v", rec.Key, err)
	}
	ph.done("ready")
	a.publishStatus(ctx, rec)
	a.notifyChanged()
	a.log.Info("ADD", "container", rec.ContainerID, "pod", rec.Pod.Namespace+"/"+rec.Pod.Name, "mode", rec.Mode, "interfaces", len(rec.Interfaces))
	return rec, nil
}

func requireEnv(call *cni.Call, needNetns bool) error {
	switch {
	case call.ContainerID == "":
		return attach.Errorf(attach.CodeInvalidEnv, "CNI_CONTAINERID is empty")
	case call.IfName == "":
		return attach.Errorf(attach.CodeInvalidEnv, "CNI_IFNAME is empty")
	case needNetns && call.Netns == "":
		return attach.Errorf(attach.CodeInvalidEnv, "CNI_NETNS is empty")
	}
	if needNetns {
		if _, err := os.Stat(call.Netns); err != nil {
			return attach.Errorf(attach.CodeInvalidEnv, "CNI_NETNS %q: %v", call.Netns, err)
		}
	}
	return nil
}

// reserve allocates every interface's addresses and writes the pending
// record, in one transaction. Addresses an earlier attempt (prev) held for
// interfaces this plan no longer has are freed in the same transaction:
// overwriting prev's record would otherwise orphan them.
func (a *Agent) reserve(call *cni.Call, p *plan, prev *Attachment) (*Attachment, error) {
	rec := &Attachment{
		Key: p.key, ContainerID: call.ContainerID, IfName: call.IfName, Netns: call.Netns,
		ConfigName: p.conf.Name, CNIVersion: p.conf.CNIVersion, Mode: p.mode, Pod: p.pod,
		State: StatePending, Created: time.Now().UTC(),
	}
	// A route goes on the first interface that needs it: the kernel keys
	// routes by destination, so the same network route on a second
	// interface (two interfaces on one network) would be refused.
	routed := map[attach.Route]bool{}
	err := a.store.Batch(func(tx *ipam.Tx) error {
		clear(routed) // Batch may re-run fn: keep it idempotent
		rec.Interfaces = rec.Interfaces[:0]
		if err := releaseDropped(tx, prev, p); err != nil {
			return err
		}
		for _, ip := range p.ifaces {
			h := ipam.Holder{ContainerID: call.ContainerID, IfName: ip.ifName, PodNamespace: p.pod.Namespace, PodName: p.pod.Name}
			ips, err := tx.Allocate(ip.network, h, ip.static)
			if err != nil {
				return fmt.Errorf("interface %s: %w", ip.ifName, err)
			}
			req := attach.Request{
				ContainerID: call.ContainerID, Netns: call.Netns, IfName: ip.ifName, Pod: p.pod,
				Network: ip.network, IPs: ips, MAC: ip.mac, DeviceID: ip.deviceID,
				DefaultRoute: ip.defaultRoute, DefaultGateways: ip.gateways,
			}
			for _, pr := range ip.network.IPAM.ParsedRoutes() {
				r := attach.Route{Dst: pr.Dst, GW: pr.GW}
				if !routed[r] {
					routed[r] = true
					req.Routes = append(req.Routes, r)
				}
			}
			rec.Interfaces = append(rec.Interfaces, attach.Record{Request: req})
		}
		return tx.PutRecord(rec.Key, rec)
	})
	switch {
	case err == nil:
		return rec, nil
	case errors.Is(err, ipam.ErrNeedBlock):
		return nil, err // reserveCluster claims a block and retries
	case errors.Is(err, ipam.ErrAddressInUse):
		return nil, attach.WithCode(attach.CodeAddressInUse, err)
	case errors.Is(err, ipam.ErrExhausted):
		return nil, attach.WithCode(attach.CodePoolExhausted, err)
	case errors.Is(err, ipam.ErrInvalidRequest):
		return nil, attach.WithCode(attach.CodeInvalidConfig, err)
	default:
		return nil, attach.Errorf(attach.CodeIOFailure, "reserve addresses: %v", err)
	}
}

// attachAll attaches every interface in parallel. On failure it detaches
// the ones that succeeded and returns the failure of the first interface
// (in request order) that failed.
func (a *Agent) attachAll(ctx context.Context, rec *Attachment) error {
	errs := make([]error, len(rec.Interfaces))
	var wg sync.WaitGroup
	for i := range rec.Interfaces {
		r := &rec.Interfaces[i]
		path, err := a.path(r.Network)
		if err != nil {
			errs[i] = err
			continue
		}
		wg.Add(1)
		go func() { // owned by this ADD: joined below
			defer wg.Done()
			actx, cancel := context.WithTimeout(ctx, a.timeout)
			defer cancel()
			iface, err := path.Attach(actx, &r.Request)
			if err != nil {
				errs[i] = fmt.Errorf("interface %s (network %s): %w", r.IfName, r.Network.Key(), err)
				return
			}
			r.Interface = *iface
		}()
	}
	wg.Wait()
	var first error
	for i, err := range errs {
		if err != nil && first == nil {
			first = err
		}
		if err != nil {
			rec.Interfaces[i].Interface = attach.Interface{} // nothing to detach
		}
	}
	return first
}

// releaseDropped frees what prev held on interfaces the new plan does not
// make (same interface name on the same network is kept: Allocate hands the
// addresses back).
func releaseDropped(tx *ipam.Tx, prev *Attachment, p *plan) error {
	if prev == nil {
		return nil
	}
	kept := map[string]bool{}
	for _, ip := range p.ifaces {
		kept[ip.network.Key()+"\x00"+ip.ifName] = true
	}
	for _, r := range prev.Interfaces {
		if kept[r.Network.Key()+"\x00"+r.IfName] {
			continue
		}
		if _, err := tx.Release(r.Network.Key(), ipam.Holder{ContainerID: prev.ContainerID, IfName: r.IfName}); err != nil {
			return fmt.Errorf("release %s of the earlier attempt: %w", r.IfName, err)
		}
	}
	return nil
}
