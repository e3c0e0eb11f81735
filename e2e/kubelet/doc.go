// Package kubelet proves telcni called by the real kubelet through a real
// CRI runtime: kubelet v1.34 (built from the k8s.io/kubernetes module by
// `make deps-kubelet`) and Debian's containerd 1.6 with runc, registered
// to a test kube-apiserver (internal/kubetest). No image registry is
// reachable: the pause and busybox images are written as OCI layout
// tarballs by the test and imported with ctr. See docs/testing.md.
package kubelet
