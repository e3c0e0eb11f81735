package kernelguest

import (
	"os"
	"testing"
)

// EnvSelfCheck makes TestHarnessSelfCheck misbehave on purpose, so that
// scripts/kernelguest/selftest.sh can prove that the harness fails the host run
// for each way a guest test can go wrong. Unset, the test skips.
const EnvSelfCheck = "TELCNI_GUEST_SELFCHECK"

func TestHarnessSelfCheck(t *testing.T) {
	Require(t)
	switch mode := os.Getenv(EnvSelfCheck); mode {
	case "":
		t.Skip(EnvSelfCheck + " is unset: nothing to check")
	case "fail":
		t.Fatal("selfcheck: a failing guest test")
	case "panic":
		panic("selfcheck: a panicking guest test")
	case "hang":
		select {} // -test.timeout must end it
	case "crash":
		// A kernel crash: the guest dies without its result line.
		if err := os.WriteFile("/proc/sysrq-trigger", []byte("c"), 0o200); err != nil {
			t.Fatalf("trigger a crash: %v", err)
		}
		select {}
	default:
		t.Fatalf("unknown %s=%q", EnvSelfCheck, mode)
	}
}
