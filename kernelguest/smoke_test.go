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

// The modules the issue lists are loaded, and loading them created no devices
// that tests might want to name themselves (bonding's bond0, dummy's dummy0).
func TestGuestModulesLoaded(t *testing.T) {
	Require(t)
	for _, m := range []string{"ipvlan", "macvlan", "8021q", "vxlan", "veth", "dummy", "bonding", "team",
		"bridge", "sctp", "nf_tables", "vfio_pci", "igb", "igbvf", "tun"} {
		if _, err := os.Stat("/sys/module/" + m); err != nil {
			t.Errorf("module %s is not loaded: %v", m, err)
		}
	}
	for _, dev := range []string{"bond0", "dummy0"} {
		if _, err := os.Stat("/sys/class/net/" + dev); err == nil {
			t.Errorf("%s exists in the guest's root netns", dev)
		}
	}
}
