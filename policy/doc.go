// Package policy compiles MultiNetworkPolicies (k8s.cni.cncf.io/v1beta1,
// NetworkPolicy's schema bound to networks by the policy-for annotation)
// into the allow rules of one pod interface on one network.
//
// It is pure: the caller gives it the policies, the pods (labels and their
// addresses per network, from the network-status annotation) and the
// namespaces' labels; it does no I/O. The result is sorted and deduplicated,
// so the same world gives the same Rules and an unchanged interface is
// never re-applied. The paths enforce it: nftables chains in the pod's netns
// (kernelpath) and ACLs in VPP (vppagent).
package policy
