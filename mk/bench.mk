# Benchmarks that are not part of `make test`.
#   make bench-kernel   CNI ADD+DEL latency, telcni vs the reference plugins, in the kernel guest

BENCH_ITERS  ?= 30
# The host bench runs fast enough for a p99 that is not just the slowest of
# 30 samples.
HOST_BENCH_ITERS ?= 100
CNIBENCH_BIN := perf/cnibench/testdata/bin
REF_PLUGINS  := github.com/containernetworking/plugins/plugins/main/ipvlan \
                github.com/containernetworking/plugins/plugins/main/macvlan \
                github.com/containernetworking/plugins/plugins/main/vlan \
                github.com/containernetworking/plugins/plugins/ipam/host-local

.PHONY: bench-kernel
bench-kernel: deps-kernelguest
	@mkdir -p $(CNIBENCH_BIN)
	CGO_ENABLED=0 $(GO) build -o $(CNIBENCH_BIN)/ ./cmd/telcni $(REF_PLUGINS)
	KG_TEST_TIMEOUT=20m KG_TIMEOUT=1500 KG_GUEST_ENV="TELCNI_BENCH=1 TELCNI_BENCH_ITERS=$(BENCH_ITERS)" RUN=TestGuestCNIBenchmark ./scripts/kernelguest/run.sh ./perf/cnibench

# The demo's guest half: ipvlan and VLAN networks (not in this host kernel).
.PHONY: demo-guest
demo-guest: deps-kernelguest
	KG_GUEST_ENV="" RUN=TestGuestDemo ./scripts/kernelguest/run.sh ./e2e/guestdemo

# Host kernel: telcni (attachment mode, pod mode) vs the reference chain,
# ADD and DEL latency ratios, and a 100-pod burst. All plugins are built
# static, as containernetworking/plugins releases are.
.PHONY: bench-cni
bench-cni: build
	@mkdir -p $(CNIBENCH_BIN)
	CGO_ENABLED=0 $(GO) build -o $(CNIBENCH_BIN)/ ./cmd/telcni ./perf/cnibench/noopcni github.com/containernetworking/plugins/plugins/main/macvlan github.com/containernetworking/plugins/plugins/ipam/host-local
	TELCNI_BENCH=1 TELCNI_BENCH_ITERS=$(HOST_BENCH_ITERS) $(GO) test -count=1 -timeout 10m -run '^TestHostCNIBenchmark$$' -v ./perf/cnibench/ | grep -E '^(cni-|    bench_host|--- |ok|FAIL)'
