// Package agent is the node agent's core: one handler path for every CNI
// call — resolve networks, allocate addresses, attach each interface,
// record, answer — with the locks and state that the thin plugin never
// holds.
package agent

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/ipam"
)

// Config assembles an Agent.
type Config struct {
	Store    *ipam.Store
	Networks api.NetworkSource
	// Paths serve the network path kinds; a network whose path has no entry
	// is refused with a message saying so.
	Paths map[api.PathKind]attach.Path
	Log   *slog.Logger
	// AttachTimeout bounds one interface's Attach (0: 60 s).
	AttachTimeout time.Duration
	// In a cluster (see cluster.go); nil on a node without Kubernetes.
	Pods        PodSource
	Status      StatusWriter
	ClusterIPAM ClusterIPAM
	// Devices says which devices the kubelet allocated to a pod (SR-IOV
	// networks with sriov.resourceName); nil without a kubelet.
	Devices DeviceSource
}

// Agent answers CNI calls.
type Agent struct {
	store    *ipam.Store
	networks api.NetworkSource
	paths    map[api.PathKind]attach.Path
	log      *slog.Logger
	timeout  time.Duration
	locks    keyedMutex
	// blockLocks serialises block claims per network subnet (cluster.go).
	blockLocks keyedMutex
	stats      callStats
	pods       PodSource
	status     StatusWriter
	cluster    ClusterIPAM
	devices    DeviceSource
	// goneGrace: attachments younger than this are never freed as a gone
	// pod's (cluster.go).
	goneGrace time.Duration
	// changed is told about attachments made or removed, policies give
	// a new interface its rules during ADD (policy.go).
	changed  func()
	policies PolicySource
}

// New returns an agent. Call Recover once before serving.
func New(cfg Config) *Agent {
	t := cfg.AttachTimeout
	if t == 0 {
		t = 60 * time.Second
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	return &Agent{store: cfg.Store, networks: cfg.Networks, paths: cfg.Paths, log: log, timeout: t,
		pods: cfg.Pods, status: cfg.Status, cluster: cfg.ClusterIPAM, devices: cfg.Devices, goneGrace: defaultGoneGrace}
}

func (a *Agent) path(n *api.Network) (attach.Path, error) {
	p, ok := a.paths[n.Path]
	if !ok {
		return nil, attach.Errorf(attach.CodeInvalidConfig, "network %s: path %s is not available on this node", n.Key(), n.Path)
	}
	return p, nil
}

// Recover finishes what a crash interrupted: an attachment still pending
// at start-up belonged to an ADD that never answered, so everything it made
// is undone and its addresses freed. The runtime sees that ADD fail and
// will retry or DEL; either works on a clean slate.
func (a *Agent) Recover(ctx context.Context) error {
	var pending []*Attachment
	err := a.forEachRecord(func(rec *Attachment) {
		if rec.State != StateReady {
			pending = append(pending, rec)
		}
	})
	if err != nil {
		return fmt.Errorf("recover: read records: %w", err)
	}
	for _, rec := range pending {
		a.log.Warn("recover: undoing interrupted ADD", "container", rec.ContainerID, "ifname", rec.IfName)
		if err := a.teardown(ctx, rec, true); err != nil {
			return fmt.Errorf("recover %s: %w", rec.Key, err)
		}
	}
	if err := a.Audit(); err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	return a.retain(ctx)
}

// Audit frees every address that no attachment record accounts for. The
// store writes allocations and records together, so there should be none;
// the audit is the safety net DANM's users asked for after years of leaked
// static addresses ("already in use" by pods long gone).
func (a *Agent) Audit() error {
	return a.store.Update(func(tx *ipam.Tx) error {
		owned := map[string]bool{}
		err := eachRecord(tx, func(rec *Attachment) {
			for _, r := range rec.Interfaces {
				owned[r.Network.Key()+"\x00"+rec.ContainerID+"\x00"+r.IfName] = true
			}
		})
		if err != nil {
			return err
		}
		for _, al := range tx.Allocations() {
			if owned[al.Network+"\x00"+al.Holder.ContainerID+"\x00"+al.Holder.IfName] {
				continue
			}
			a.log.Warn("audit: freeing an address no attachment owns", "network", al.Network, "address", al.Address, "holder", al.Holder.String())
			if _, err := tx.Release(al.Network, al.Holder); err != nil {
				return fmt.Errorf("audit: free %s: %w", al.Address, err)
			}
		}
		return nil
	})
}
