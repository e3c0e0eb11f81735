# Cluster install (deploy/kubernetes, cmd/telcni-install). The manifests'
# tests (deploy/kubernetes/deploy_test.go) run `kubectl apply
# --dry-run=server -k` against the real kube-apiserver of internal/kubetest;
# `make deps-kube` builds kube-apiserver and kubectl into .cache/kube/bin.
# `go test ./...` (make test) runs them; test-deploy runs only them.

.PHONY: test-deploy

test-deploy: deps-kube
	TELCNI_REQUIRE_KUBE=1 $(GO) test -count=1 ./cmd/telcni-install/ ./deploy/...
