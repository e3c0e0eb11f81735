# Kernel guest harness (issue 3): runs tests that call kernelguest.Require in a
# throwaway QEMU guest booted with Debian bookworm's kernel. See docs/testing.md.
#   make test-kernel                          every package whose tests import kernelguest
#   make test-kernel PKGS=./kernelpath/...    only these packages
#   make test-kernel RUN='TestProbe.*'        only tests matching the regex (-test.run)

DEPS_TARGETS += deps-kernelguest
TEST_TARGETS += test-kernel

PKGS ?= ./...
RUN  ?=

.PHONY: deps-kernelguest test-kernel

deps-kernelguest:
	@./scripts/kernelguest/deps.sh

test-kernel:
	RUN='$(RUN)' ./scripts/kernelguest/run.sh $(PKGS)

# Proves that failing, panicking and hanging guest tests, a guest past its
# timeout and a crashing guest kernel each fail the harness (five short boots).
.PHONY: test-kernel-selftest
TEST_TARGETS += test-kernel-selftest
test-kernel-selftest:
	./scripts/kernelguest/selftest.sh
