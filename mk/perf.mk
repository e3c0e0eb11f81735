# Data path suite (perf/dataplane, issue 11): NDR/PDR searches and latency
# over telcni's VPP paths (L2, L3), a hand-configured VPP xconnect (the
# ceiling) and the kernel paths (macvlan vs a veth pair), with TRex as the
# generator where unpacked (`make deps-trex`), else a Go memif generator.
#
#   make perf        full run: 64, 512, 1518 B and IMIX, 10 s final trials;
#                    writes perf/results/<date>/ (report.md, PNG plots,
#                    results.json) and prints the `perf-ratio` lines
#   make test-perf   short acceptance run in `make test`: 64 B on the VPP
#                    scenarios, checks the search converged, the report
#                    exists and the ratio line carries numbers

TEST_TARGETS += test-perf

PERF_OUT      ?= $(CURDIR)/perf/results/$(shell date -u +%F)
PERF_PROFILES ?= 64,512,1518,IMIX
PERF_FINAL    ?= 10s
# More flags for the suite, e.g. PERF_ARGS="-perf.precision 0.02 -perf.scenarios vpp-l2,vpp-xconnect"
PERF_ARGS     ?=

.PHONY: perf test-perf

perf: deps-vpp deps-trex
	@bin=$$(./scripts/vpp/find.sh); test -n "$$bin" || { echo "perf: no VPP found (set VPP_BIN or run make deps)"; exit 1; }; \
	VPP_BIN="$$bin" TELCNI_PERF=1 $(GO) test -count=1 -timeout 90m -run '^TestDataplane$$' -v ./perf/dataplane/ \
	  -args -perf.out $(PERF_OUT) -perf.profiles $(PERF_PROFILES) -perf.final $(PERF_FINAL) $(PERF_ARGS) 2>&1 \
	  | tee $(CACHE)/perf.log | grep -E '^(perf-|perf report|--- |ok|FAIL)|^ +(suite_test|trexgen)\.go'; exit $${PIPESTATUS[0]}

test-perf:
	@bin=$$(./scripts/vpp/find.sh); \
	if [ -z "$$bin" ]; then echo "test-perf: skipped: no VPP found (set VPP_BIN to a VPP 25.10, or make deps)"; exit 0; fi; \
	req=; gen=go; if [ -x $(CACHE)/trex/_t-rex-64 ]; then req=1; gen=trex; else echo "test-perf: TRex not unpacked (make deps-trex): the Go memif generator runs instead"; fi; \
	VPP_BIN="$$bin" TELCNI_PERF=1 TELCNI_REQUIRE_TREX=$$req $(GO) test -count=1 -timeout 15m -run '^TestDataplane$$' -v ./perf/dataplane/ \
	  -args -perf.check -perf.out $(CACHE)/perf-test -perf.generator $$gen -perf.profiles 64 -perf.scenarios vpp-l2,vpp-l3,vpp-xconnect \
	  -perf.initial 250ms -perf.final 1s -perf.phases 1 -perf.precision 0.05 -perf.latency 1s 2>&1 \
	  | tee $(CACHE)/test-perf.log | grep -E '^(perf-|perf report|--- |ok|FAIL)|^ +(suite_test|trexgen)\.go'; exit $${PIPESTATUS[0]}
