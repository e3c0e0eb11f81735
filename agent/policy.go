package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/ipam"
	"github.com/telcni/telcni/policy"
)

// PolicyEnforcer is implemented by paths that enforce MultiNetworkPolicy
// on their interfaces (kernelpath: nftables chains in the pod's netns).
// Applying replaces the interface's policy atomically; an open r removes
// the isolation.
type PolicyEnforcer interface {
	EnforcePolicy(ctx context.Context, rec *attach.Record, r policy.Rules) error
}

// PolicyInterface is one ready pod interface of this node, as the policy
// controller sees it. Generation changes when the attachment is made again
// (a retried ADD): its rules must then be applied again.
type PolicyInterface struct {
	Attachment string
	IfName     string
	Generation string
	Pod        attach.Pod
	Network    string // network key, as network-status names it
}

// PolicyInterfaces lists every interface of the node's ready attachments.
func (a *Agent) PolicyInterfaces(ctx context.Context) ([]PolicyInterface, error) {
	var out []PolicyInterface
	err := a.forEachRecord(func(rec *Attachment) {
		if rec.State != StateReady {
			return
		}
		for i := range rec.Interfaces {
			out = append(out, policyInterface(rec, &rec.Interfaces[i]))
		}
	})
	if err != nil {
		return nil, fmt.Errorf("read records: %w", err)
	}
	return out, nil
}

// EnforcePolicy applies r to one interface under its attachment's lock: a
// DEL or a retried ADD in flight finishes first. An attachment gone
// meanwhile is no error (nothing to protect); a path that cannot enforce
// policy is logged once per change, not retried.
func (a *Agent) EnforcePolicy(ctx context.Context, pi PolicyInterface, r policy.Rules) error {
	unlock := a.locks.lock(pi.Attachment)
	defer unlock()
	rec, err := a.get(pi.Attachment)
	if errors.Is(err, ipam.ErrNoRecord) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read attachment %s: %w", pi.Attachment, err)
	}
	for i := range rec.Interfaces {
		ir := &rec.Interfaces[i]
		if ir.IfName != pi.IfName {
			continue
		}
		if err := a.enforceOn(ctx, rec, ir, r); err != nil {
			return fmt.Errorf("pod %s/%s interface %s: %w", rec.Pod.Namespace, rec.Pod.Name, ir.IfName, err)
		}
		return nil
	}
	return nil // the interface is no longer in the attachment
}

// PolicySource compiles the rules of an interface from what the policy
// controller knows now; ok is false when it cannot tell yet (caches not
// synced, the pod not seen).
type PolicySource interface {
	RulesFor(ctx context.Context, pi PolicyInterface) (r policy.Rules, ok bool)
}

// UsePolicies makes ADD apply each new interface's policy before it
// answers, so that a pod a policy selects never runs open, not even until
// the controller's next pass. Set it before serving.
func (a *Agent) UsePolicies(src PolicySource) { a.policies = src }

// enforceAtAdd applies the policy of every interface of rec that a policy
// isolates (open ones need nothing: a new interface has no chain). A
// failure fails the ADD, as a firewall that cannot be installed does.
func (a *Agent) enforceAtAdd(ctx context.Context, rec *Attachment) error {
	if a.policies == nil {
		return nil
	}
	for i := range rec.Interfaces {
		ir := &rec.Interfaces[i]
		r, ok := a.policies.RulesFor(ctx, policyInterface(rec, ir))
		if !ok || r.Open() {
			continue
		}
		if err := a.enforceOn(ctx, rec, ir, r); err != nil {
			return attach.Errorf(attach.CodeIOFailure, "interface %s (network %s): MultiNetworkPolicy: %v", ir.IfName, ir.Network.Key(), err)
		}
	}
	return nil
}

func policyInterface(rec *Attachment, ir *attach.Record) PolicyInterface {
	return PolicyInterface{Attachment: rec.Key, IfName: ir.IfName, Generation: rec.Created.Format(time.RFC3339Nano),
		Pod: rec.Pod, Network: ir.Network.Key()}
}

// enforceOn has the interface's path enforce r; a path that cannot is
// logged (when r isolates anything) and left as it is.
func (a *Agent) enforceOn(ctx context.Context, rec *Attachment, ir *attach.Record, r policy.Rules) error {
	p, err := a.path(ir.Network)
	if err != nil {
		return err
	}
	pe, ok := p.(PolicyEnforcer)
	if !ok {
		if !r.Open() {
			a.log.Warn("a MultiNetworkPolicy selects an interface whose path does not enforce policies",
				"pod", rec.Pod.Namespace+"/"+rec.Pod.Name, "ifname", ir.IfName, "network", ir.Network.Key(), "path", ir.Network.Path)
		}
		return nil
	}
	return pe.EnforcePolicy(ctx, ir, r)
}

// OnAttachmentsChanged registers fn, called after every ADD that made
// interfaces and every DEL that removed some (the policy controller's
// Poke). Set it before serving.
func (a *Agent) OnAttachmentsChanged(fn func()) { a.changed = fn }

func (a *Agent) notifyChanged() {
	if a.changed != nil {
		a.changed()
	}
}
