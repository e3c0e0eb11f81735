package sriov

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
)

// settings is what a VF is configured with through its PF.
type settings struct {
	MAC       net.HardwareAddr
	VLAN, QoS int
	SpoofChk  bool
	Trust     bool
	LinkState uint32
	MinTx     int
	MaxTx     int
}

// defaults are what every free VF is reset to.
var defaults = settings{MAC: net.HardwareAddr{0, 0, 0, 0, 0, 0}, SpoofChk: true, LinkState: netlink.VF_LINK_STATE_AUTO}

func wantSettings(n *api.Network, mac net.HardwareAddr) settings {
	s := defaults
	s.MAC = mac
	s.VLAN = n.VLAN
	if o := n.SRIOV; o != nil {
		s.QoS = o.VLANQoS
		if o.SpoofChk != nil {
			s.SpoofChk = *o.SpoofChk
		}
		if o.Trust != nil {
			s.Trust = *o.Trust
		}
		switch o.LinkState {
		case "enable":
			s.LinkState = netlink.VF_LINK_STATE_ENABLE
		case "disable":
			s.LinkState = netlink.VF_LINK_STATE_DISABLE
		}
		s.MinTx, s.MaxTx = o.MinTxRate, o.MaxTxRate
	}
	return s
}

// randomMAC is a locally administered unicast MAC.
func randomMAC() net.HardwareAddr {
	m := make(net.HardwareAddr, 6)
	_, _ = rand.Read(m)
	m[0] = m[0]&^1 | 2
	return m
}

// vfInfo reads VF vf's state as the PF reports it.
func vfInfo(h *netlink.Handle, pf string, vf int) (netlink.Link, *netlink.VfInfo, error) {
	link, err := h.LinkByName(pf)
	if err != nil {
		return nil, nil, fmt.Errorf("PF %s: %w", pf, err)
	}
	for i := range link.Attrs().Vfs {
		if v := &link.Attrs().Vfs[i]; v.ID == vf {
			return link, v, nil
		}
	}
	return link, nil, fmt.Errorf("PF %s reports no VF %d", pf, vf)
}

// apply sets s on VF vf through the PF, only what differs from what the PF
// reports, so that a NIC without, say, rate limits still takes a VF whose
// network asks for none.
func apply(h *netlink.Handle, pf string, vf int, s settings) error {
	link, cur, err := vfInfo(h, pf, vf)
	if err != nil {
		return err
	}
	// A setting the PF's driver refuses is the network's to change: CNI
	// code 7, naming the network field.
	fail := func(what string, err error) error {
		switch {
		case errors.Is(err, unix.EOPNOTSUPP):
			return attach.Errorf(attach.CodeInvalidConfig, "PF %s VF %d: set %s: the PF's driver does not support it: %w", pf, vf, what, err)
		case errors.Is(err, unix.EINVAL):
			return attach.Errorf(attach.CodeInvalidConfig, "PF %s VF %d: set %s: the PF's driver refuses the value: %w", pf, vf, what, err)
		}
		return fmt.Errorf("PF %s VF %d: set %s: %w", pf, vf, what, err)
	}
	if !bytes.Equal(cur.Mac, s.MAC) {
		if err := h.LinkSetVfHardwareAddr(link, vf, s.MAC); err != nil {
			// Some PF drivers refuse the all-zero MAC; a random one is as
			// good for a free VF (a pod's is always set anew).
			if !isZero(s.MAC) {
				return fail("mac "+s.MAC.String(), err)
			}
			if err := h.LinkSetVfHardwareAddr(link, vf, randomMAC()); err != nil {
				return fail("mac", err)
			}
		}
	}
	if cur.Vlan != s.VLAN || cur.Qos != s.QoS {
		if err := h.LinkSetVfVlanQos(link, vf, s.VLAN, s.QoS); err != nil {
			return fail(fmt.Sprintf("vlan %d sriov.vlanQoS %d", s.VLAN, s.QoS), err)
		}
	}
	if cur.Spoofchk != s.SpoofChk {
		if err := h.LinkSetVfSpoofchk(link, vf, s.SpoofChk); err != nil {
			return fail(fmt.Sprintf("sriov.spoofchk %v", s.SpoofChk), err)
		}
	}
	if (cur.Trust != 0) != s.Trust {
		if err := h.LinkSetVfTrust(link, vf, s.Trust); err != nil {
			return fail(fmt.Sprintf("sriov.trust %v", s.Trust), err)
		}
	}
	if cur.LinkState != s.LinkState {
		if err := h.LinkSetVfState(link, vf, s.LinkState); err != nil {
			return fail("sriov.linkState "+linkStateName(s.LinkState), err)
		}
	}
	if int(cur.MinTxRate) != s.MinTx || int(cur.MaxTxRate) != s.MaxTx {
		if err := h.LinkSetVfRate(link, vf, s.MinTx, s.MaxTx); err != nil {
			return fail(fmt.Sprintf("sriov.minTxRate %d sriov.maxTxRate %d (Mbps)", s.MinTx, s.MaxTx), err)
		}
	}
	return nil
}

func linkStateName(v uint32) string {
	switch v {
	case netlink.VF_LINK_STATE_AUTO:
		return "auto"
	case netlink.VF_LINK_STATE_ENABLE:
		return "enable"
	case netlink.VF_LINK_STATE_DISABLE:
		return "disable"
	}
	return fmt.Sprint(v)
}

func isZero(m net.HardwareAddr) bool { return bytes.Equal(m, make(net.HardwareAddr, len(m))) }

// differs names the first setting of cur that is not s ("" when none).
func differs(cur *netlink.VfInfo, s settings) string {
	switch {
	case !bytes.Equal(cur.Mac, s.MAC):
		return fmt.Sprintf("mac is %s, want %s", cur.Mac, s.MAC)
	case cur.Vlan != s.VLAN || cur.Qos != s.QoS:
		return fmt.Sprintf("vlan %d qos %d, want vlan %d qos %d", cur.Vlan, cur.Qos, s.VLAN, s.QoS)
	case cur.Spoofchk != s.SpoofChk:
		return fmt.Sprintf("spoofchk %v, want %v", cur.Spoofchk, s.SpoofChk)
	case (cur.Trust != 0) != s.Trust:
		return fmt.Sprintf("trust %v, want %v", cur.Trust != 0, s.Trust)
	case cur.LinkState != s.LinkState:
		return fmt.Sprintf("link state %s, want %s", linkStateName(cur.LinkState), linkStateName(s.LinkState))
	case int(cur.MinTxRate) != s.MinTx || int(cur.MaxTxRate) != s.MaxTx:
		return fmt.Sprintf("tx rate %d-%d Mbps, want %d-%d", cur.MinTxRate, cur.MaxTxRate, s.MinTx, s.MaxTx)
	}
	return ""
}
