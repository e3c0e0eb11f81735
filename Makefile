# telcni — top-level build.
#
# Two commands matter to a newcomer (see README): `make demo` and `make test`.
# Feature areas add their own targets in mk/*.mk and append to the hook
# variables below, so that each area owns its own build and test recipe.

SHELL := /bin/bash
GO    ?= go
BIN   := $(CURDIR)/bin
CACHE := $(CURDIR)/.cache
export GOFLAGS ?= -mod=mod

# Hooks extended by mk/*.mk:
DEPS_TARGETS :=       # install what the tests need (apt packages, downloads)
TEST_TARGETS :=       # test suites run by `make test` after the unit tests

STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.7.0
# Fuzz budgets are counts, not durations: go1.26's fuzz coordinator can fail
# a run with a spurious "context deadline exceeded" when a duration runs out
# mid-execution (golang/go#75804, fixed in go1.27).
FUZZTIME    ?= 100000x

.PHONY: all build deps deps-base test test-unit test-fuzz vet lint demo bench clean

all: build

# Static binaries (CGO_ENABLED=0): the plugin is copied onto nodes whose
# libc is not the build machine's, and a dynamically linked one also
# starts 0.9 ms slower on every CNI call (the loader and libc's start-up).
build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -o $(BIN)/ ./cmd/...

include $(wildcard mk/*.mk)

deps-base:
	@./scripts/deps-base.sh

deps: deps-base $(DEPS_TARGETS)

vet:
	$(GO) vet ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) run $(STATICCHECK) ./...

# Unit and integration tests that run on this host (as root: real netns,
# veth, macvlan); tests needing the kernel guest, VPP or DPDK skip here with
# a message and run in their own suites below.
# With kube-apiserver built (`make deps-kube`) the Kubernetes tests must run.
test-unit: build
	TELCNI_REQUIRE_KUBE=$$(test -x $(CACHE)/kube/bin/kube-apiserver && echo 1) $(GO) test -count=1 ./...

# Bounded fuzzing of the parsers that take user input.
test-fuzz:
	$(GO) test ./api -run '^$$' -fuzz '^FuzzParseSelections$$' -fuzztime $(FUZZTIME)
	$(GO) test ./api -run '^$$' -fuzz '^FuzzParseNetwork$$' -fuzztime $(FUZZTIME)

# `make test` installs what it needs, then runs every suite.
test: deps vet lint test-unit test-fuzz $(TEST_TARGETS)

# `make demo` runs the no-Kubernetes demo (agent + bbolt, three pods).
demo: deps-base build
	./scripts/demo.sh

# Benchmarks (not part of `make test`): IPAM and the agent's ADD path.
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./ipam ./agent

clean:
	rm -rf $(BIN)
