# VPP fast path (vppagent/, binapi/): integration tests against a real VPP 25.10.
#
# VPP has no Debian package; build or install it outside the project (see
# deploy/vpp/README.md) and name the binary with VPP_BIN. Without one the
# integration tests skip with a message naming VPP_BIN.

VPP_BIN ?= $(firstword $(shell command -v vpp 2>/dev/null) $(wildcard /opt/vpp/bin/vpp))

DEPS_TARGETS += deps-vpp
TEST_TARGETS += test-vpp

.PHONY: deps-vpp test-vpp bench-vpp

deps-vpp:
	@./scripts/vpp/deps.sh

# Runs every TestVPP* integration test (each starts its own VPP with a
# private runtime dir, no DPDK, no hugepages).
test-vpp:
	VPP_BIN="$(VPP_BIN)" $(GO) test -count=1 -timeout 15m -run 'TestVPP' -v ./vppagent/ ./agent/ ./e2e/

# pod -> VPP -> pod Mpps over memif (L2 and L3, 64 B and 1500 B) next to a
# direct memif pair in the same run.
bench-vpp:
	VPP_BIN="$(VPP_BIN)" $(GO) test -count=1 -timeout 15m -run '^$$' -bench 'BenchmarkVPP' -benchtime 3s ./vppagent/
