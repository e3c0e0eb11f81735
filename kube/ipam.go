package kube

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/ipam"
)

// Cluster IPAM on the telcni.io CRDs, with no global lock and no lease:
//
//   - IPBlock: a piece of a network's dynamic range that one node hands out
//     from, alone and with no API call per address (ipam's block mode).
//     A node claims one by creating it: the API server's create is the
//     optimistic-concurrency step (AlreadyExists: another node won, try the
//     next block).
//   - IPReservation: one fixed address, named after it, so that a second
//     pod asking for it fails at create with AlreadyExists, naming the
//     holder.
//
// A fixed address inside the dynamic range must not also be handed out by
// the node whose block holds it. Both sides write first and read second: a
// node claiming a block creates it, then lists the reservations (the
// reserved addresses in it are never handed out); a node reserving an
// address creates the reservation, then lists the blocks (a block of
// another node holding it: the reservation is withdrawn, and the request
// refused naming that node). The API server's reads are linearizable, so
// one of the two always sees the other.

// Group and version of the telcni CRDs.
const (
	Group   = "telcni.io"
	Version = "v1alpha1"
	// LabelNetwork holds a hash of the network key ("namespace/name"),
	// which a label value cannot hold as it is.
	LabelNetwork = "telcni.io/network"
	LabelNode    = "telcni.io/node"
)

var (
	blocksGVR       = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "ipblocks"}
	reservationsGVR = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "ipreservations"}
)

// networkHash is the LabelNetwork value of a network key.
func networkHash(key string) string {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	return fmt.Sprintf("%016x", h.Sum64())
}

func dashed(a netip.Addr) string { return strings.NewReplacer(".", "-", ":", "-").Replace(a.String()) }

// BlockName and ReservationName are the object names: the network's hash
// and the address, so that one address has exactly one name.
func BlockName(network string, p netip.Prefix) string {
	return fmt.Sprintf("blk-%s-%s-%d", networkHash(network), dashed(p.Addr()), p.Bits())
}

func ReservationName(network string, a netip.Addr) string {
	return fmt.Sprintf("res-%s-%s", networkHash(network), dashed(a))
}

// BlockBits is the prefix length of a subnet's blocks: /26 (64 addresses)
// for IPv4 and /122 for IPv6, smaller for small subnets so that a subnet
// has at least 16 blocks.
func BlockBits(subnet netip.Prefix) int {
	minBits, maxBits := 26, 32
	if subnet.Addr().Is6() {
		minBits, maxBits = 122, 128
	}
	return min(max(minBits, subnet.Bits()+4), maxBits)
}

func (c *Cluster) labels(network string) map[string]string {
	return map[string]string{LabelNetwork: networkHash(network), LabelNode: c.cfg.NodeName}
}

func selector(network string) metav1.ListOptions {
	return metav1.ListOptions{LabelSelector: LabelNetwork + "=" + networkHash(network)}
}

// blockObj is one listed IPBlock.
type blockObj struct {
	name   string
	uid    types.UID
	prefix netip.Prefix
	node   string
	net    string
}

// resObj is one listed IPReservation.
type resObj struct {
	name                   string
	uid                    types.UID
	created                metav1.Time
	network, node          string
	addr                   netip.Addr
	containerID, ifName    string
	podNS, podName, podUID string
}

func (r resObj) holder() string {
	pod := "no pod"
	if r.podName != "" {
		pod = r.podNS + "/" + r.podName
	}
	return fmt.Sprintf("%s (container %.12s, interface %s) on node %s", pod, r.containerID, r.ifName, r.node)
}

func spec(u *unstructured.Unstructured, field string) string {
	s, _, _ := unstructured.NestedString(u.Object, "spec", field)
	return s
}

func toBlock(u *unstructured.Unstructured) (blockObj, bool) {
	p, err := netip.ParsePrefix(spec(u, "cidr"))
	return blockObj{name: u.GetName(), uid: u.GetUID(), prefix: p, node: spec(u, "node"), net: spec(u, "network")}, err == nil
}

func toRes(u *unstructured.Unstructured) (resObj, bool) {
	a, err := netip.ParseAddr(spec(u, "address"))
	return resObj{name: u.GetName(), uid: u.GetUID(), created: u.GetCreationTimestamp(), network: spec(u, "network"), node: spec(u, "node"), addr: a,
		containerID: spec(u, "containerID"), ifName: spec(u, "ifName"),
		podNS: spec(u, "podNamespace"), podName: spec(u, "podName"), podUID: spec(u, "podUID")}, err == nil
}

func (c *Cluster) listBlocks(ctx context.Context, opts metav1.ListOptions) ([]blockObj, error) {
	l, err := c.dyn.Resource(blocksGVR).List(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("list IPBlocks: %w", err)
	}
	out := make([]blockObj, 0, len(l.Items))
	for i := range l.Items {
		if b, ok := toBlock(&l.Items[i]); ok {
			out = append(out, b)
		}
	}
	return out, nil
}

func (c *Cluster) listReservations(ctx context.Context, opts metav1.ListOptions) ([]resObj, error) {
	l, err := c.dyn.Resource(reservationsGVR).List(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("list IPReservations: %w", err)
	}
	out := make([]resObj, 0, len(l.Items))
	for i := range l.Items {
		if r, ok := toRes(&l.Items[i]); ok {
			out = append(out, r)
		}
	}
	return out, nil
}

// deleteUID deletes name only if it is still the object with uid (not a
// successor of the same name); gone already is fine.
func (c *Cluster) deleteUID(ctx context.Context, gvr schema.GroupVersionResource, name string, uid types.UID) error {
	err := c.dyn.Resource(gvr).Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete %s %s: %w", gvr.Resource, name, err)
	}
	return nil
}

// ClaimBlock implements agent.ClusterIPAM: the first block of the subnet's
// dynamic range that no node holds becomes this node's.
func (c *Cluster) ClaimBlock(ctx context.Context, n *api.Network, subnet netip.Prefix) (ipam.Block, map[netip.Addr]string, error) {
	var s *api.ParsedSubnet
	for _, ps := range n.IPAM.ParsedSubnets() {
		if ps.Prefix == subnet {
			s = &ps
		}
	}
	if s == nil {
		return ipam.Block{}, nil, fmt.Errorf("network %s has no subnet %s: %w", n.Key(), subnet, ipam.ErrInvalidRequest)
	}
	key := n.Key()
	held, err := c.listBlocks(ctx, selector(key))
	if err != nil {
		return ipam.Block{}, nil, err
	}
	taken := map[netip.Prefix]bool{}
	for _, b := range held {
		taken[b.prefix] = true
	}
	bits := BlockBits(s.Prefix)
	for p := netip.PrefixFrom(s.RangeStart, bits).Masked(); p.IsValid() && !s.RangeEnd.Less(p.Addr()); {
		if !taken[p] {
			name := BlockName(key, p)
			u := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": Group + "/" + Version, "kind": "IPBlock",
				"metadata": map[string]any{"name": name},
				"spec":     map[string]any{"network": key, "cidr": p.String(), "node": c.cfg.NodeName},
			}}
			u.SetLabels(c.labels(key))
			_, err := c.dyn.Resource(blocksGVR).Create(ctx, u, metav1.CreateOptions{})
			switch {
			case err == nil:
				foreign, err := c.reservedIn(ctx, key, p)
				if err != nil {
					// Keep the block: it is ours and the next ADD lists again.
					return ipam.Block{}, nil, err
				}
				return ipam.Block{Prefix: p, Name: name}, foreign, nil
			case !apierrors.IsAlreadyExists(err):
				return ipam.Block{}, nil, fmt.Errorf("claim block %s of network %s: %w", p, key, err)
			}
			// Another node took it since the list: try the next one.
		}
		next := api.LastAddr(p).Next()
		if !next.IsValid() {
			break
		}
		p = netip.PrefixFrom(next, bits)
	}
	return ipam.Block{}, nil, fmt.Errorf("network %s: every /%d block of its dynamic range %s-%s is held by a node: %w",
		key, bits, s.RangeStart, s.RangeEnd, ipam.ErrExhausted)
}

// reservedIn lists the addresses of block p that other nodes' pods
// reserved.
func (c *Cluster) reservedIn(ctx context.Context, network string, p netip.Prefix) (map[netip.Addr]string, error) {
	res, err := c.listReservations(ctx, selector(network))
	if err != nil {
		return nil, err
	}
	out := map[netip.Addr]string{}
	for _, r := range res {
		if r.node != c.cfg.NodeName && p.Contains(r.addr) {
			out[r.addr] = r.holder()
		}
	}
	return out, nil
}

// ReserveStatic implements agent.ClusterIPAM.
func (c *Cluster) ReserveStatic(ctx context.Context, n *api.Network, a netip.Addr, h ipam.Holder, pod attach.Pod) error {
	key := n.Key()
	name := ReservationName(key, a)
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": Group + "/" + Version, "kind": "IPReservation",
		"metadata": map[string]any{"name": name},
		"spec": map[string]any{"network": key, "address": a.String(), "containerID": h.ContainerID, "ifName": h.IfName,
			"node": c.cfg.NodeName, "podNamespace": pod.Namespace, "podName": pod.Name, "podUID": pod.UID},
	}}
	u.SetLabels(c.labels(key))
	created, err := c.dyn.Resource(reservationsGVR).Create(ctx, u, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		created, err = c.takeOver(ctx, u, key, a, h, pod)
	}
	if err != nil {
		return err
	}
	if created == nil {
		return nil // ours already (a retried ADD)
	}
	// Write first, read second (see the top of this file).
	blocks, err := c.listBlocks(ctx, selector(key))
	if err != nil {
		_ = c.deleteUID(ctx, reservationsGVR, name, created.GetUID())
		return err
	}
	for _, b := range blocks {
		if b.node != c.cfg.NodeName && b.prefix.Contains(a) {
			_ = c.deleteUID(ctx, reservationsGVR, name, created.GetUID())
			return fmt.Errorf("network %s: address %s lies in block %s, from which node %s hands out dynamic addresses; "+
				"fixed addresses of pods on other nodes must lie outside the network's dynamic range (rangeStart..rangeEnd): %w",
				key, a, b.prefix, b.node, ipam.ErrAddressInUse)
		}
	}
	return nil
}

// takeOver handles a reservation that exists already: the same holder's
// (a retried ADD: nil, nil), the same pod's on this node from an earlier
// sandbox (replaced), or another pod's (a conflict naming it).
func (c *Cluster) takeOver(ctx context.Context, u *unstructured.Unstructured, key string, a netip.Addr, h ipam.Holder, pod attach.Pod) (*unstructured.Unstructured, error) {
	name := u.GetName()
	cur, err := c.dyn.Resource(reservationsGVR).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return c.dyn.Resource(reservationsGVR).Create(ctx, u, metav1.CreateOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("read reservation of %s: %w", a, err)
	}
	r, _ := toRes(cur)
	switch {
	case r.containerID == h.ContainerID && r.ifName == h.IfName:
		return nil, nil
	case pod.UID != "" && r.podUID == pod.UID && r.node == c.cfg.NodeName && r.ifName == h.IfName:
		c.log.Info("taking over the reservation of an earlier sandbox of the pod", "address", a, "network", key, "old", r.containerID, "new", h.ContainerID)
		if err := c.deleteUID(ctx, reservationsGVR, name, r.uid); err != nil {
			return nil, err
		}
		created, err := c.dyn.Resource(reservationsGVR).Create(ctx, u, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("network %s: address %s was taken meanwhile: %w", key, a, ipam.ErrAddressInUse)
		}
		return created, err
	}
	return nil, fmt.Errorf("network %s: address %s is already held by %s: %w", key, a, r.holder(), ipam.ErrAddressInUse)
}

// ReleaseStatic implements agent.ClusterIPAM.
func (c *Cluster) ReleaseStatic(ctx context.Context, n *api.Network, a netip.Addr, h ipam.Holder) error {
	name := ReservationName(n.Key(), a)
	cur, err := c.dyn.Resource(reservationsGVR).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read reservation of %s: %w", a, err)
	}
	r, _ := toRes(cur)
	if r.containerID != h.ContainerID || r.ifName != h.IfName {
		return nil // someone else's now
	}
	return c.deleteUID(ctx, reservationsGVR, name, r.uid)
}

var errNoCRD = errors.New("the telcni.io CRDs are not installed (kubectl apply -k deploy/kubernetes/overlays/...)")
