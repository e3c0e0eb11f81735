# Real container runtimes (e2e/runtimes): podman 4.3 from Debian, with its
# CNI backend and runc, runs containers from a busybox rootfs on a telcni
# network (the telcni plugin binary and a telcni-agent process).
# `make deps-runtimes` installs podman, runc and busybox-static and builds
# the rootfs into .cache/runtimes/rootfs. With podman installed,
# `make test-runtimes` requires the tests to run (TELCNI_REQUIRE_RUNTIMES);
# without it they skip, naming `make deps-runtimes`.

DEPS_TARGETS += deps-runtimes
TEST_TARGETS += test-runtimes

.PHONY: deps-runtimes test-runtimes

deps-runtimes:
	@./scripts/runtimes/deps.sh

test-runtimes:
	TELCNI_REQUIRE_RUNTIMES=$$(command -v podman >/dev/null && echo 1) \
		$(GO) test -count=1 -run TestPodman -v ./e2e/runtimes/
