// Package kernelguest lets a test say that it needs a real, complete kernel:
// Debian's, booted in a throwaway QEMU guest by scripts/kernelguest/run.sh
// (`make test-kernel`). On the host such tests skip with a message that names the
// harness; in the guest they run. The harness finds the packages to boot by
// looking for tests that import this package, so importing it is all it takes.
package kernelguest

import (
	"os"
	"testing"
)

// EnvGuest is set to "1" by the guest's init for every test binary it runs.
const EnvGuest = "TELCNI_GUEST"

// EnvSRIOV is set to "1" in the guest when the harness attached the emulated igb
// (82576) SR-IOV NIC.
const EnvSRIOV = "TELCNI_GUEST_SRIOV"

// SkipMessage is what tests that need the guest say when skipped on the host.
const SkipMessage = "needs the kernel guest: run `make test-kernel` (or scripts/kernelguest/run.sh PKG...)"

// InGuest reports whether this process runs inside the harness's guest.
func InGuest() bool { return os.Getenv(EnvGuest) == "1" }

// Require skips the test unless it runs inside the kernel guest.
func Require(t testing.TB) {
	t.Helper()
	if !InGuest() {
		t.Skip(SkipMessage)
	}
}
