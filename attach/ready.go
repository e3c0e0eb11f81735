package attach

// Readier is implemented by paths that depend on a service outside the
// agent (VPP for memif and vhostuser). Ready is nil while the path can
// attach interfaces; otherwise its error says why (e.g. which socket is
// unreachable). The agent's STATUS and readiness consult it only for the
// networks that use the path, so a node without VPP serves its other
// networks normally.
type Readier interface {
	Ready() error
}
