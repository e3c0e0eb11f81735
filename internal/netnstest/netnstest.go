// Package netnstest gives tests throwaway network namespaces. Everything a
// test creates lives in namespaces it owns, so nothing touches the node's
// own interfaces, and deleting the namespace cleans up every link in it.
package netnstest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

var seq atomic.Int64

// New creates a named netns (under /var/run/netns, like `ip netns add`)
// and removes it when the test ends. It skips the test when the process
// cannot create namespaces (not root).
func New(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	name := fmt.Sprintf("tcn%d-%d", os.Getpid(), seq.Add(1))
	path, err := Create(name)
	if err != nil {
		t.Fatalf("create netns: %v", err)
	}
	t.Cleanup(func() { _ = netns.DeleteNamed(name) })
	return path
}

// Create makes a named netns and returns its path, leaving the calling
// goroutine's thread in its original namespace.
func Create(name string) (string, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return "", fmt.Errorf("get current netns: %w", err)
	}
	defer orig.Close()
	ns, err := netns.NewNamed(name)
	if err != nil {
		return "", fmt.Errorf("create netns %s: %w", name, err)
	}
	ns.Close()
	if err := netns.Set(orig); err != nil {
		return "", fmt.Errorf("restore netns: %w", err)
	}
	return filepath.Join("/var/run/netns", name), nil
}

// Do runs fn with the calling thread in the netns at path.
func Do(path string, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return fmt.Errorf("enter netns %s: %w", path, err)
	}
	defer func() { _ = netns.Set(orig) }()
	return fn()
}

// Handle returns a netlink handle inside the netns at path.
func Handle(t testing.TB, path string) *netlink.Handle {
	t.Helper()
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// Uplink creates an up veth pair name/name+"p" in the netns at path: a
// stand-in node NIC with carrier (a bridge without ports has none, and a
// macvlan follows its master's carrier).
func Uplink(t testing.TB, path, name string) {
	t.Helper()
	h := Handle(t, path)
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: 1500}, PeerName: name + "p"}
	if err := h.LinkAdd(v); err != nil {
		t.Fatalf("create veth %s: %v", name, err)
	}
	for _, n := range []string{name, name + "p"} {
		l, err := h.LinkByName(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatalf("set %s up: %v", n, err)
		}
	}
}
