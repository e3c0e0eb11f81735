package kube

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/telcni/telcni/ipam"
)

// LeaseName is the Lease the agents elect the IPAM controller with.
const LeaseName = "telcni-ipam-controller"

// Run keeps, until ctx ends, this node's IPAM objects in line with its
// store (Audit every GCInterval) and, while this agent is the elected
// controller, frees the blocks of nodes that are gone and the reservations
// of pods that are gone (GC).
func (c *Cluster) Run(ctx context.Context, store *ipam.Store) {
	done := make(chan struct{})
	go func() { // owned: ends with ctx
		defer close(done)
		c.elect(ctx)
	}()
	t := time.NewTicker(c.cfg.GCInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			<-done
			return
		case <-t.C:
			if err := c.Audit(ctx, store, time.Minute); err != nil && ctx.Err() == nil {
				c.log.Warn("IPAM audit", "err", err)
			}
		}
	}
}

func (c *Cluster) elect(ctx context.Context) {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: c.cfg.LeaseNamespace, Name: LeaseName},
		Client:     c.client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: c.cfg.NodeName},
	}
	for ctx.Err() == nil {
		leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
			Lock: lock, ReleaseOnCancel: true,
			LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					c.log.Info("elected IPAM controller", "node", c.cfg.NodeName)
					c.lead(ctx)
				},
				OnStoppedLeading: func() { c.log.Info("IPAM controller: leadership ended", "node", c.cfg.NodeName) },
			},
		})
	}
}

func (c *Cluster) lead(ctx context.Context) {
	t := time.NewTicker(c.cfg.GCInterval)
	defer t.Stop()
	for {
		if err := c.GC(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("IPAM GC", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// GC frees what nobody alive holds: blocks and reservations of nodes whose
// Node object is gone, and reservations of pods that no longer exist (or
// were replaced by a pod of the same name).
func (c *Cluster) GC(ctx context.Context) error {
	// Reservations and blocks first, nodes and pods second: an object
	// listed here was made for a node and pod that existed before the
	// second list, so it is never taken for an orphan too early.
	res, err := c.listReservations(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	blocks, err := c.listBlocks(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	nodeList, err := c.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	podList, err := c.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	nodes := map[string]bool{}
	for _, n := range nodeList.Items {
		nodes[n.Name] = true
	}
	pods := map[string]types.UID{}
	for _, p := range podList.Items {
		pods[p.Namespace+"/"+p.Name] = p.UID
	}
	var errs []error
	for _, b := range blocks {
		if !nodes[b.node] {
			c.log.Info("freeing the block of a node that is gone", "block", b.prefix, "network", b.net, "node", b.node)
			errs = append(errs, c.deleteUID(ctx, blocksGVR, b.name, b.uid))
		}
	}
	for _, r := range res {
		why := ""
		uid, podExists := pods[r.podNS+"/"+r.podName]
		switch {
		case !nodes[r.node]:
			why = "its node is gone"
		case r.podName != "" && !podExists:
			why = "its pod is gone"
		case r.podName != "" && r.podUID != "" && string(uid) != r.podUID:
			why = "its pod was replaced"
		}
		if why != "" {
			c.log.Info("freeing a fixed-address reservation: "+why, "address", r.addr, "network", r.network, "holder", r.holder())
			errs = append(errs, c.deleteUID(ctx, reservationsGVR, r.name, r.uid))
		}
	}
	return errors.Join(errs...)
}

// Audit brings this node's IPAM objects and its store in line: a block the
// node created but did not record (a crash in between) is recorded; a
// reservation of this node that no local allocation holds, older than
// minAge (so not one an ADD is making right now), is deleted; the record of
// other nodes' reservations in this node's blocks is refreshed. At start-up,
// before serving, minAge is 0.
func (c *Cluster) Audit(ctx context.Context, store *ipam.Store, minAge time.Duration) error {
	mine := metav1.ListOptions{LabelSelector: LabelNode + "=" + c.cfg.NodeName}
	blocks, err := c.listBlocks(ctx, mine)
	if err != nil {
		return err
	}
	res, err := c.listReservations(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	type netAddr struct {
		net  string
		addr netip.Addr
	}
	held := map[netAddr]ipam.Holder{}
	var errs []error
	err = store.Update(func(tx *ipam.Tx) error {
		for _, a := range tx.Allocations() {
			held[netAddr{a.Network, a.Address}] = a.Holder
		}
		recorded := map[string]map[netip.Prefix]bool{}
		for _, b := range blocks {
			if recorded[b.net] == nil {
				recorded[b.net] = map[netip.Prefix]bool{}
				for _, rb := range tx.Blocks(b.net) {
					recorded[b.net][rb.Prefix] = true
				}
			}
			if !recorded[b.net][b.prefix] {
				c.log.Info("recording a block this node claimed before a restart", "block", b.prefix, "network", b.net)
				if err := tx.AddBlock(b.net, ipam.Block{Prefix: b.prefix, Name: b.name}, nil); err != nil {
					return err
				}
			}
		}
		// Other nodes' reservations inside this node's blocks.
		for _, b := range blocks {
			want := map[netip.Addr]string{}
			for _, r := range res {
				if r.network == b.net && r.node != c.cfg.NodeName && b.prefix.Contains(r.addr) {
					want[r.addr] = r.holder()
				}
			}
			if err := tx.SyncForeign(b.net, b.prefix, want); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("audit store: %w", err)
	}
	for _, r := range res {
		if r.node != c.cfg.NodeName || time.Since(r.created.Time) < minAge {
			continue
		}
		if h, ok := held[netAddr{r.network, r.addr}]; ok && h.ContainerID == r.containerID && h.IfName == r.ifName {
			continue
		}
		c.log.Info("freeing a reservation no local allocation holds", "address", r.addr, "network", r.network, "holder", r.holder())
		errs = append(errs, c.deleteUID(ctx, reservationsGVR, r.name, r.uid))
	}
	return errors.Join(errs...)
}

// checkCRDs fails with errNoCRD when the API server does not serve the
// telcni.io CRDs.
func (c *Cluster) checkCRDs() error {
	_, err := c.client.Discovery().ServerResourcesForGroupVersion(Group + "/" + Version)
	if apierrors.IsNotFound(err) {
		return errNoCRD
	}
	if err != nil {
		return fmt.Errorf("discover %s/%s: %w", Group, Version, err)
	}
	return nil
}
