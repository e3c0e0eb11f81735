package api

import (
	"context"
	"errors"
)

// ErrNetworkNotFound is returned (wrapped) by a NetworkSource that has no
// network of the requested name for the requested namespace.
var ErrNetworkNotFound = errors.New("network not found")

// NetworkSource is where the agent looks up network definitions: a
// directory of files on a node without Kubernetes, NetworkAttachment-
// Definitions in a cluster.
type NetworkSource interface {
	// Network returns the definition a pod in namespace sees under name:
	// the namespaced one, or else the cluster-wide one (no namespace).
	Network(ctx context.Context, namespace, name string) (*Network, error)
	// Networks returns every definition.
	Networks(ctx context.Context) ([]*Network, error)
}
