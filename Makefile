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

.PHONY: all build deps deps-base test test-unit vet lint demo clean

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/...

include $(wildcard mk/*.mk)

deps-base:
	@./scripts/deps-base.sh

deps: deps-base $(DEPS_TARGETS)

vet:
	$(GO) vet ./...

test-unit: build
	$(GO) test -count=1 ./...

# `make test` installs what it needs, then runs every suite.
test: deps vet test-unit $(TEST_TARGETS)

clean:
	rm -rf $(BIN)
