package memif

import (
	"context"
	"testing"
	"time"

	"github.com/telcni/telcni/internal/netnstest"
)

// TestAbstractSocketInNetns: an abstract socket lives in one network
// namespace (as VPP's do in a pod's netns under Calico/VPP). A server opened
// in a namespace is reachable by a client dialing in that namespace only.
func TestAbstractSocketInNetns(t *testing.T) {
	needMemfd(t)
	ns := netnstest.New(t)
	sock := "abstract:telcni-memif-netns-test"
	l, err := Listen(Config{Socket: sock, Netns: ns, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c, err := Dial(ctx, Config{Socket: sock, Logger: quietLog}); err == nil {
		c.Close()
		t.Fatal("reached an abstract socket of another netns from the host netns")
	}
	c, err := Dial(ctx, Config{Socket: sock, Netns: ns, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := l.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	transfer(t, c, s, 0, [][]byte{frame(1, 64)})
	if _, err := Dial(ctx, Config{Socket: sock, Netns: "/nonexistent/ns", Logger: quietLog}); err == nil {
		t.Fatal("dial with a missing netns succeeded")
	}
}
