package api

import (
	"context"
	"errors"
)

// ErrNetworkNotFound is returned (wrapped) by a NetworkSource that has no
// network of the requested name for the requested namespace.
var ErrNetworkNotFound = errors.New("network not found")

// ErrInvalidNetwork is returned (wrapped) by a NetworkSource whose
// definition of the requested name exists but cannot serve: it is not a
// telcni network (a NAD of another plugin) or it does not validate.
var ErrInvalidNetwork = errors.New("invalid network definition")

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

// NamespaceScoper is implemented by sources that limit whose networks a pod
// may use: in a cluster, those of its own namespace and of the namespaces
// the operator shares (a NAD in another tenant's namespace is not visible).
type NamespaceScoper interface {
	Visible(podNamespace, networkNamespace string) bool
}

// ChangeReporter is implemented by sources that can tell the operator, on
// the definition itself, that a change of it was refused (in a cluster: an
// event on the NetworkAttachmentDefinition).
type ChangeReporter interface {
	NetworkRefused(key, msg string)
}
