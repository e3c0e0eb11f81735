package kernelguest

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NewNetNS creates a fresh network namespace that is closed (and, with its last
// reference gone, destroyed along with its links) when the test ends.
func NewNetNS(t testing.TB) netns.NsHandle {
	t.Helper()
	var ns netns.NsHandle
	err := Do(netns.None(), func() error {
		var err error
		// netns.New moves the calling thread into the new namespace; Do throws
		// that thread away afterwards.
		ns, err = netns.New()
		return err
	})
	if err != nil {
		t.Fatalf("create netns: %v", err)
	}
	t.Cleanup(func() { _ = ns.Close() })
	return ns
}

// Do runs fn on a dedicated OS thread that is inside ns (or in the caller's
// namespace if ns is netns.None()). Sockets that fn opens stay in ns for their
// whole life, so a test can open them here and use them from any goroutine.
//
// The thread is never returned to Go's pool: its goroutine ends while still
// locked, which makes the runtime terminate the thread. That is why no other
// goroutine can ever run in a namespace it did not ask for.
func Do(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() { // owned by Do, which waits for it
		runtime.LockOSThread()
		if ns.IsOpen() {
			if err := netns.Set(ns); err != nil {
				errc <- fmt.Errorf("enter netns %s: %w", ns, err)
				return
			}
		}
		errc <- fn()
	}()
	return <-errc
}

// Handle returns a route-netlink handle that works on ns, closed when the test
// ends.
func Handle(t testing.TB, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatalf("netlink handle in netns %s: %v", ns, err)
	}
	t.Cleanup(h.Close)
	return h
}

// Sysctl writes value to the sysctl key (dotted, e.g. "net.sctp.hb_interval") of
// network namespace ns: /proc/sys/net shows the namespace of the thread that
// opens it, so the write happens on a thread inside ns.
func Sysctl(ns netns.NsHandle, key, value string) error {
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	return Do(ns, func() error {
		if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
		}
		return nil
	})
}
