# TRex stateless traffic generator (perf/trex, issue 11). TRex has no Debian
# package: scripts/trex/deps.sh unpacks ../shared/trex (or TREX_TARBALL)
# into .cache/trex. perf/trex's tests start it (memif ports looped through
# a Go forwarder) and skip without it; TELCNI_REQUIRE_TREX=1 makes them fail.

DEPS_TARGETS += deps-trex

.PHONY: deps-trex

deps-trex:
	@./scripts/trex/deps.sh
