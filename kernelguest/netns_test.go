package kernelguest

import (
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// The netns helpers work on any Linux kernel with veth, so they are tested on the
// host (as root) as well as used in the guest.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
}

func TestDoEntersNetNS(t *testing.T) {
	needRoot(t)
	ns := NewNetNS(t)
	var inside string
	err := Do(ns, func() error {
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
	if inside != ns.UniqueId() {
		t.Fatalf("Do ran in netns %s, want %s", inside, ns.UniqueId())
	}
	host, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	if host.UniqueId() == ns.UniqueId() {
		t.Fatal("the test's own thread ended up in the new netns")
	}
}

func TestUDPEchoOverVeth(t *testing.T) {
	needRoot(t)
	nsA, nsB := NewNetNS(t), NewNetNS(t)
	h := Handle(t, nsA)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ta"}, PeerName: "tb", PeerNamespace: netlink.NsFd(nsB)}
	if err := h.LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	for _, c := range []struct {
		ns         netns.NsHandle
		name, addr string
	}{{nsA, "ta", "192.0.2.1/24"}, {nsB, "tb", "192.0.2.2/24"}} {
		hh := Handle(t, c.ns)
		l, err := hh.LinkByName(c.name)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := netlink.ParseAddr(c.addr)
		if err := hh.AddrAdd(l, a); err != nil {
			t.Fatal(err)
		}
		if err := hh.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	if err := UDPEcho(nsA, nsB, netip.MustParseAddrPort("192.0.2.2:7000"), 5*time.Second); err != nil {
		t.Fatalf("echo over veth: %v", err)
	}
	// An address nobody has gets no echo.
	// With the wire cut, UDPEcho must say so.
	hb := Handle(t, nsB)
	tb, err := hb.LinkByName("tb")
	if err != nil {
		t.Fatal(err)
	}
	if err := hb.LinkSetDown(tb); err != nil {
		t.Fatal(err)
	}
	if err := UDPEcho(nsA, nsB, netip.MustParseAddrPort("192.0.2.2:7000"), 300*time.Millisecond); err == nil {
		t.Fatal("echo with the peer's link down")
	}
}

func TestSysctlIsPerNetNS(t *testing.T) {
	needRoot(t)
	ns := NewNetNS(t)
	const key = "net.ipv4.ip_forward"
	host, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	want := "1"
	if strings.TrimSpace(string(host)) == "1" {
		want = "0"
	}
	if err := Sysctl(ns, key, want); err != nil {
		t.Fatal(err)
	}
	var got []byte
	if err := Do(ns, func() error {
		var err error
		got, err = os.ReadFile("/proc/sys/net/ipv4/ip_forward")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(got)) != want {
		t.Fatalf("%s in the netns = %q, want %q", key, got, want)
	}
	after, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(host) {
		t.Fatalf("the host's %s changed from %q to %q", key, host, after)
	}
}
