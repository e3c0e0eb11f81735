package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/cni"
	"github.com/telcni/telcni/ipam"
)

// The agent runs alone on a node (bbolt only) or as one of a cluster's
// agents. In a cluster, Config's Pods, Status and ClusterIPAM connect it to
// Kubernetes (package kube); each is optional and nil on a node without it.

// PodSource reads a pod's annotations from the cluster: pod mode when the
// runtime passed none in runtimeConfig.
type PodSource interface {
	// PodAnnotations returns the annotations of pod; it fails when the pod
	// is gone or, with pod.UID set, was replaced by another of that name.
	PodAnnotations(ctx context.Context, pod attach.Pod) (map[string]string, error)
}

// StatusWriter publishes a pod's network-status annotation.
type StatusWriter interface {
	WriteNetworkStatus(ctx context.Context, pod attach.Pod, status []api.NetworkStatus) error
}

// ClusterIPAM keeps addresses unique across the nodes of a cluster: fixed
// addresses are reserved cluster-wide, dynamic ones come from blocks a node
// holds (ipam's block mode).
type ClusterIPAM interface {
	// ReserveStatic reserves a on network n for holder h of pod; reserving
	// again for the same holder succeeds. An address another pod holds
	// fails with an error wrapping ipam.ErrAddressInUse naming the holder.
	ReserveStatic(ctx context.Context, n *api.Network, a netip.Addr, h ipam.Holder, pod attach.Pod) error
	// ReleaseStatic frees h's reservation of a; freeing what h does not
	// hold is not an error.
	ReleaseStatic(ctx context.Context, n *api.Network, a netip.Addr, h ipam.Holder) error
	// ClaimBlock gives this node another block of subnet s of n, with the
	// addresses in it that other nodes' pods reserved (never to be handed
	// out here). No block left fails wrapping ipam.ErrExhausted.
	ClaimBlock(ctx context.Context, n *api.Network, s netip.Prefix) (ipam.Block, map[netip.Addr]string, error)
}

// maxBlockClaims bounds the block claims of one ADD (one per interface and
// family is the most it can need; the rest is slack for races).
const maxBlockClaims = 16

// reserveCluster runs reserve, claiming a block whenever the node's blocks
// of a network are full, after reserving the plan's fixed addresses
// cluster-wide. What it reserved is released again when it fails.
func (a *Agent) reserveCluster(ctx context.Context, call *cni.Call, p *plan, prev *Attachment) (*Attachment, error) {
	if a.cluster == nil {
		return a.reserve(call, p, prev)
	}
	var done []staticRes
	undo := func() {
		uctx, cancel := attach.UndoContext(ctx) // not ended by a caller that gave up
		defer cancel()
		for _, r := range done {
			a.releaseStatic(uctx, r.n, r.a, r.h)
		}
	}
	for _, ip := range p.ifaces {
		h := ipam.Holder{ContainerID: call.ContainerID, IfName: ip.ifName, PodNamespace: p.pod.Namespace, PodName: p.pod.Name}
		for _, pfx := range ip.static {
			if err := a.cluster.ReserveStatic(ctx, ip.network, pfx.Addr(), h, p.pod); err != nil {
				undo()
				return nil, clusterCode(fmt.Errorf("interface %s: %w", ip.ifName, err))
			}
			done = append(done, staticRes{ip.network, pfx.Addr(), h})
		}
	}
	for claims := 0; ; claims++ {
		rec, err := a.reserve(call, p, prev)
		var nb *ipam.NeedBlockError
		if !errors.As(err, &nb) {
			if err != nil {
				undo()
			}
			return rec, err
		}
		if claims == maxBlockClaims {
			undo()
			return nil, attach.Errorf(attach.CodeTryAgainLater, "network %s: no free address after claiming %d blocks (other nodes raced for them)", nb.Network, claims)
		}
		if err := a.claimBlock(ctx, p, nb); err != nil {
			undo()
			return nil, err
		}
	}
}

type staticRes struct {
	n *api.Network
	a netip.Addr
	h ipam.Holder
}

func (a *Agent) claimBlock(ctx context.Context, p *plan, nb *ipam.NeedBlockError) error {
	var n *api.Network
	for _, ip := range p.ifaces {
		if ip.network.Key() == nb.Network {
			n = ip.network
		}
	}
	if n == nil {
		return attach.Errorf(attach.CodeInternal, "block needed for network %s, which the ADD does not use", nb.Network)
	}
	// One claim at a time per subnet: a burst of ADDs that all found the
	// blocks full needs one more block, not one each.
	unlock := a.blockLocks.lock(nb.Network + " " + nb.Subnet.String())
	defer unlock()
	held := 0
	_ = a.store.View(func(tx *ipam.Tx) error { held = tx.BlocksIn(nb.Network, nb.Subnet); return nil })
	if held > nb.Held {
		return nil // claimed meanwhile: retry the allocation
	}
	b, foreign, err := a.cluster.ClaimBlock(ctx, n, nb.Subnet)
	if err != nil {
		return clusterCode(err)
	}
	if err := a.store.Update(func(tx *ipam.Tx) error { return tx.AddBlock(n.Key(), b, foreign) }); err != nil {
		return attach.Errorf(attach.CodeIOFailure, "record block %s of network %s: %v", b.Prefix, n.Key(), err)
	}
	a.log.Info("claimed address block", "network", n.Key(), "block", b.Prefix, "reservedElsewhere", len(foreign))
	return nil
}

// releaseStatics frees the cluster reservations of rec's fixed addresses.
// A failure is logged: the cluster's GC frees reservations whose pod is
// gone.
func (a *Agent) releaseStatics(ctx context.Context, rec *Attachment) {
	if a.cluster == nil {
		return
	}
	for _, r := range rec.Interfaces {
		h := ipam.Holder{ContainerID: rec.ContainerID, IfName: r.IfName}
		for _, ip := range r.IPs {
			if ip.Static {
				a.releaseStatic(ctx, r.Network, ip.Address.Addr(), h)
			}
		}
	}
}

func (a *Agent) releaseStatic(ctx context.Context, n *api.Network, addr netip.Addr, h ipam.Holder) {
	if err := a.cluster.ReleaseStatic(ctx, n, addr, h); err != nil {
		a.log.Warn("release of a cluster address reservation failed; the cluster GC frees it once the pod is gone",
			"network", n.Key(), "address", addr, "container", h.ContainerID, "ifname", h.IfName, "err", err)
	}
}

// clusterCode gives a cluster IPAM error its CNI code.
func clusterCode(err error) error {
	var ce *attach.CodedError
	switch {
	case errors.As(err, &ce):
		return err
	case errors.Is(err, ipam.ErrAddressInUse):
		return attach.WithCode(attach.CodeAddressInUse, err)
	case errors.Is(err, ipam.ErrExhausted):
		return attach.WithCode(attach.CodePoolExhausted, err)
	case errors.Is(err, ipam.ErrInvalidRequest):
		return attach.WithCode(attach.CodeInvalidConfig, err)
	default:
		return attach.Errorf(attach.CodeTryAgainLater, "cluster IPAM: %v", err)
	}
}

// publishStatus writes the pod's network-status after a pod-mode ADD. The
// pod runs whether or not the annotation could be written, so a failure is
// logged, not returned.
func (a *Agent) publishStatus(ctx context.Context, rec *Attachment) {
	if a.status == nil || rec.Mode != ModePod || rec.Pod.Name == "" {
		return
	}
	if err := a.status.WriteNetworkStatus(ctx, rec.Pod, NetworkStatus(rec)); err != nil {
		a.log.Warn("writing network-status failed", "pod", rec.Pod.Namespace+"/"+rec.Pod.Name, "err", err)
	}
}

// PodLiveness is implemented by a PodSource that can confirm a pod is gone.
type PodLiveness interface {
	// PodGone is true when pod no longer exists, or was replaced by another
	// pod of its name (a different UID).
	PodGone(ctx context.Context, pod attach.Pod) (bool, error)
}

// defaultGoneGrace keeps freeGonePods away from attachments made just now.
const defaultGoneGrace = time.Minute

// freeGonePods frees the attachments of pods the cluster confirms are gone:
// their DEL never came (node reboot, runtime crash: DANM's leaked fixed
// addresses). It returns how many it freed.
func (a *Agent) freeGonePods(ctx context.Context) (int, error) {
	pl, ok := a.pods.(PodLiveness)
	if !ok {
		return 0, nil
	}
	var cands []*Attachment
	err := a.forEachRecord(func(rec *Attachment) {
		if rec.State == StateReady && rec.Pod.Name != "" && time.Since(rec.Created) > a.goneGrace {
			cands = append(cands, rec)
		}
	})
	if err != nil {
		return 0, fmt.Errorf("read records: %w", err)
	}
	freed := 0
	var errs []error
	for _, rec := range cands {
		gone, err := pl.PodGone(ctx, rec.Pod)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !gone {
			continue
		}
		a.log.Info("freeing the attachment of a pod that is gone (no DEL came)", "pod", rec.Pod.Namespace+"/"+rec.Pod.Name, "container", rec.ContainerID)
		if _, err := a.delKey(ctx, rec.Key); err != nil {
			errs = append(errs, err)
			continue
		}
		freed++
	}
	return freed, errors.Join(errs...)
}
