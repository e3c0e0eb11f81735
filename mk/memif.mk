# memif: pure-Go memif endpoint (memif/), its DPDK interop tests, fuzzing
# and benchmark. See docs/perf.md for the benchmark table.
.PHONY: deps-memif test-memif bench-memif

DEPS_TARGETS += deps-memif
TEST_TARGETS += test-memif

# A count, not a duration: go1.26's fuzz coordinator can report a spurious
# "context deadline exceeded" when a duration runs out mid-execution
# (golang/go#75804, fixed in go1.27).
MEMIF_FUZZTIME ?= 100000x

# dpdk-testpmd + net_memif PMD from Debian's DPDK 22.11, unpacked into .cache/dpdk.
deps-memif:
	@./scripts/memif/deps.sh

# Interop tests must run here (MEMIF_REQUIRE_TESTPMD turns their skip into a
# failure), then each fuzz target runs for a bounded number of inputs.
# (`go test ./...` already ran the other memif tests.)
test-memif: deps-memif
	MEMIF_REQUIRE_TESTPMD=1 $(GO) test -count=1 -run '^TestInterop' ./memif/
	@for f in FuzzDecodeMsg FuzzRing FuzzHandshake; do \
		echo "fuzz $$f for $(MEMIF_FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(MEMIF_FUZZTIME) -parallel 2 ./memif/ || exit 1; \
	done

# Side-by-side throughput: testpmd->testpmd baseline, testpmd->Go, Go->testpmd, Go->Go.
bench-memif: deps-memif
	$(GO) run ./perf/memifbench $(MEMIF_BENCH_ARGS)
