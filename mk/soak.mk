# Soak (cmd/telcni-soak): pods churning ADD/DEL through the real telcni
# plugin against a telcni-agent process, with faults injected at random
# (agent and VPP killed with SIGKILL, pod netns deleted before DEL, DELs
# never sent then CNI GC, duplicate ADDs, CHECKs, the state tmpfs full),
# then an audit: no address, record, link, nftables table or VPP
# interface left, no address ever held twice. As root; everything lives in
# namespaces, a tmpfs and temp dirs the soak creates.
#
#   make soak                         200 pods, 5 minutes (SOAK_FLAGS to change)
#   make test-soak                    50 pods, 45 s: part of `make test`
#
# With a VPP (scripts/vpp/find.sh) both add -vpp: a memif network served
# by a private VPP, and VPP killed as a fault.

TEST_TARGETS += test-soak

SOAK_FLAGS ?=

.PHONY: soak test-soak

soak: build
	@bin=$$(./scripts/vpp/find.sh); \
	VPP_BIN="$$bin" $(GO) run ./cmd/telcni-soak -bin-dir $(BIN) $${bin:+-vpp} $(SOAK_FLAGS)

test-soak: build
	@bin=$$(./scripts/vpp/find.sh); \
	if [ -n "$$bin" ]; then echo "test-soak: VPP at $$bin"; else echo "test-soak: no VPP found: kernel networks only (set VPP_BIN)"; fi; \
	VPP_BIN="$$bin" timeout 300 $(GO) run ./cmd/telcni-soak -bin-dir $(BIN) -pods 50 -duration 45s $${bin:+-vpp}
