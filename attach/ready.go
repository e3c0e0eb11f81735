package attach

import (
	"context"

	"github.com/telcni/telcni/api"
)

// Readier is implemented by paths that depend on a service outside the
// agent (VPP for memif and vhostuser). ReadyFor is nil while the path can
// attach interfaces of network n; otherwise its error says why (which
// socket is unreachable, which plugin a network needs is missing). The
// agent's STATUS and readiness consult it only for the networks that use
// the path, so a node without VPP serves its other networks normally.
type Readier interface {
	ReadyFor(n *api.Network) error
}

// Retainer is implemented by paths that keep their own account of what
// they made, because their objects outlive the agent (VPP). At start-up,
// after interrupted ADDs are undone, the agent hands each such path every
// interface record of a ready attachment on the path's networks: the path
// forgets and removes what is not among them and rebuilds what is missing,
// so that the agent's records stay the one truth.
type Retainer interface {
	Retain(ctx context.Context, recs []*Record) error
}

// BatchDetacher is implemented by paths that remove several interfaces of
// one pod faster together than one by one (the kernel path: one unregister
// batch for all of a pod's links). Its errors are Detach's.
type BatchDetacher interface {
	DetachAll(ctx context.Context, recs []*Record) error
}
