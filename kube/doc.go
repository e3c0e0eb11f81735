// Package kube connects the agent to Kubernetes: network definitions from
// NetworkAttachmentDefinitions (an api.NetworkSource), pods' annotations
// read from the API and their network-status written back, cluster-wide
// fixed-IP IPAM on telcni.io CRDs (IPBlock, IPReservation) and the
// leader-elected controller that frees what dead nodes and pods held.
//
// Without a kubeconfig or in-cluster config the agent runs without this
// package, exactly as on a node without Kubernetes.
package kube
