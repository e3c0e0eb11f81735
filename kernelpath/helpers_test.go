package kernelpath

import (
	"strconv"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func parseAddr(s string) (*netlink.Addr, error) { return netlink.ParseAddr(s) }

func itoa(i int) string { return strconv.Itoa(i) }

func mustNS(t *testing.T, path string) netns.NsHandle {
	t.Helper()
	h, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}
