# The real kubelet (e2e/kubelet): kubelet v1.34 built from the
# k8s.io/kubernetes module and Debian's containerd 1.6 (CRI) with runc call
# telcni as a cluster's nodes do, against the test kube-apiserver.
# `make deps-kubelet` installs containerd, runc and busybox-static (apt)
# and builds kubelet into .cache/kube/bin. With kubelet built and
# containerd installed, `make test-kubelet` requires the test to run
# (TELCNI_REQUIRE_KUBELET); without them it skips, naming `make deps-kubelet`.

DEPS_TARGETS += deps-kubelet
TEST_TARGETS += test-kubelet

.PHONY: deps-kubelet test-kubelet

deps-kubelet:
	@./scripts/kubelet/deps.sh

test-kubelet:
	TELCNI_REQUIRE_KUBELET=$$(test -x $(CACHE)/kube/bin/kubelet && command -v containerd >/dev/null && echo 1) \
		$(GO) test -count=1 -timeout 5m -run TestKubelet -v ./e2e/kubelet/
