package netnstest

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// These helpers work on any Linux kernel with veth: host tests (as root) and
// the kernel guest's probes use them alike.

func TestDoEntersNetNS(t *testing.T) {
	path := New(t)
	want, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	var inside string
	err = Do(path, func() error {
		cur, err := netns.Get()
		if err != nil {
			return err
		}
		defer cur.Close()
		inside = cur.UniqueId()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if inside != want.UniqueId() {
		t.Fatalf("Do ran in netns %s, want %s", inside, want.UniqueId())
	}
	host, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	if host.UniqueId() == want.UniqueId() {
		t.Fatal("the test's own thread ended up in the new netns")
	}
}

// A wire (veth) with an address at each end carries a UDP echo, which sees
// the sender's address; with the wire cut, UDPEcho says so.
func TestUDPEchoOverWire(t *testing.T) {
	nsA, nsB := New(t), New(t)
	Wire(t, nsA, nsB, "t", "192.0.2.2/24")
	AddrUp(t, nsA, "t", "192.0.2.1/24")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	src, err := UDPEcho(ctx, nsA, nsB, netip.MustParseAddr("192.0.2.2"))
	if err != nil {
		t.Fatalf("echo over the wire: %v", err)
	}
	if src != netip.MustParseAddr("192.0.2.1") {
		t.Fatalf("receiver saw source %s, want 192.0.2.1", src)
	}
	hb := Handle(t, nsB)
	tp, err := hb.LinkByName("tp")
	if err != nil {
		t.Fatal(err)
	}
	if err := hb.LinkSetDown(tp); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := UDPEcho(ctx, nsA, nsB, netip.MustParseAddr("192.0.2.2")); err == nil {
		t.Fatal("echo with the peer's link down")
	}
}

// A sysctl under /proc/sys/net written inside Do is the netns's own: the
// host's value stays as it was.
func TestSysctlIsPerNetNS(t *testing.T) {
	path := New(t)
	const file = "/proc/sys/net/ipv4/ip_forward"
	host, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	want := "1"
	if strings.TrimSpace(string(host)) == "1" {
		want = "0"
	}
	var got []byte
	if err := Do(path, func() error {
		if err := os.WriteFile(file, []byte(want), 0o644); err != nil {
			return err
		}
		var err error
		got, err = os.ReadFile(file)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(got)) != want {
		t.Fatalf("%s in the netns = %q, want %q", file, got, want)
	}
	after, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(host) {
		t.Fatalf("the host's %s changed from %q to %q", file, host, after)
	}
}
