package kernelpath

import (
	"strconv"

	"github.com/vishvananda/netlink"
)

func parseAddr(s string) (*netlink.Addr, error) { return netlink.ParseAddr(s) }

func itoa(i int) string { return strconv.Itoa(i) }
