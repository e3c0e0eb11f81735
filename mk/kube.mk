# Kubernetes (kube/, deploy/kubernetes): tests run against a real
# kube-apiserver and etcd started by internal/kubetest. `make deps-kube`
# installs etcd (Debian) and builds kube-apiserver into .cache/kube/bin.
# With them, `make test` requires the Kubernetes tests to run
# (TELCNI_REQUIRE_KUBE); without them the tests skip, saying so.

DEPS_TARGETS += deps-kube

.PHONY: deps-kube

deps-kube:
	@./scripts/kube/deps.sh

# 1,000 pods × 3 networks over 10 simulated nodes against the real API
# server (no-op interfaces: the IPAM's and the API's cost), ADD then DEL.
.PHONY: bench-kube
bench-kube: deps-kube
	TELCNI_REQUIRE_KUBE=1 TELCNI_BENCH_PODS=$${PODS:-1000} TELCNI_BENCH_NODES=$${NODES:-10} \
		$(GO) test -count=1 -timeout 20m -run TestKubeIPAMScale -v ./perf/kubebench/ | grep -E '^(kube-bench|--- |ok|FAIL)'
