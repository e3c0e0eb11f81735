package kernelguest

import (
	"os"
	"strings"
	"testing"
)

func TestGuestKernelIsDebian(t *testing.T) {
	Require(t)
	b, err := os.ReadFile("/proc/version")
	if err != nil {
		t.Fatalf("read /proc/version: %v", err)
	}
	if !strings.Contains(string(b), "Debian") {
		t.Fatalf("guest kernel is not Debian's: %s", b)
	}
	t.Logf("%s", strings.TrimSpace(string(b)))
}
