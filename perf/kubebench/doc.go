// Package kubebench measures telcni's cluster IPAM at scale against a real
// kube-apiserver: N pods × 3 networks over M simulated nodes (one agent
// each, in one process), ADD then DEL of all, with the pods' interfaces
// made by a no-op path so that the figure is the agent's, the IPAM's and
// the API server's cost (kernel cost per interface: make bench-cni).
//
//	make bench-kube          1,000 pods × 3 networks over 10 nodes
//	go test ./perf/kubebench  a small run (correctness: no duplicate, no leak)
package kubebench
