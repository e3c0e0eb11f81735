// Package binapi is the set of VPP binary API messages telcni's vppagent
// uses, and the check that a running VPP speaks exactly those messages.
//
// The Go bindings themselves come from go.fd.io/govpp (generated from VPP
// 25.10-release). Listing every message here, rather than trusting that
// the bindings match, lets the agent refuse an incompatible VPP at connect
// time with the names of the messages that differ, instead of failing
// later in the middle of a pod ADD.
//
// To run against another VPP release, regenerate bindings from that VPP's
// installed API JSON (see gen.go) and point the imports at them.
package binapi

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"go.fd.io/govpp/api"
	"go.fd.io/govpp/binapi/acl"
	afpacket "go.fd.io/govpp/binapi/af_packet"
	afxdp "go.fd.io/govpp/binapi/af_xdp"
	"go.fd.io/govpp/binapi/arp"
	"go.fd.io/govpp/binapi/avf"
	interfaces "go.fd.io/govpp/binapi/interface"
	"go.fd.io/govpp/binapi/ip"
	"go.fd.io/govpp/binapi/ip6_nd"
	"go.fd.io/govpp/binapi/l2"
	"go.fd.io/govpp/binapi/memclnt"
	"go.fd.io/govpp/binapi/memif"
	"go.fd.io/govpp/binapi/vhost_user"
	"go.fd.io/govpp/binapi/vlib"
	"go.fd.io/govpp/binapi/vpe"
)

// VPPRelease is the VPP release the bindings were generated from.
const VPPRelease = "25.10-release"

// Group is the messages of one VPP feature. Optional groups (plugins a
// node may not load: vhost-user, uplink drivers) do not make VPP
// incompatible when they are missing entirely; Check reports them and only
// the networks that need them are refused.
type Group struct {
	Name     string
	Optional bool
	Messages []api.Message
}

// Groups lists every request and reply the agent sends or expects.
var Groups = []Group{
	{Name: "core", Messages: []api.Message{
		&memclnt.ControlPing{}, &memclnt.ControlPingReply{},
		&vpe.ShowVersion{}, &vpe.ShowVersionReply{},
		&vlib.CliInband{}, &vlib.CliInbandReply{},
	}},
	{Name: "interface", Messages: []api.Message{
		&interfaces.SwInterfaceDump{}, &interfaces.SwInterfaceDetails{},
		&interfaces.SwInterfaceSetFlags{}, &interfaces.SwInterfaceSetFlagsReply{},
		&interfaces.SwInterfaceTagAddDel{}, &interfaces.SwInterfaceTagAddDelReply{},
		&interfaces.SwInterfaceAddDelAddress{}, &interfaces.SwInterfaceAddDelAddressReply{},
		&interfaces.SwInterfaceSetUnnumbered{}, &interfaces.SwInterfaceSetUnnumberedReply{},
		&interfaces.SwInterfaceSetTable{}, &interfaces.SwInterfaceSetTableReply{},
		&interfaces.SwInterfaceGetTable{}, &interfaces.SwInterfaceGetTableReply{},
		&interfaces.SwInterfaceSetMtu{}, &interfaces.SwInterfaceSetMtuReply{},
		&interfaces.CreateVlanSubif{}, &interfaces.CreateVlanSubifReply{},
		&interfaces.DeleteSubif{}, &interfaces.DeleteSubifReply{},
		&interfaces.CreateLoopback{}, &interfaces.CreateLoopbackReply{},
		&interfaces.DeleteLoopback{}, &interfaces.DeleteLoopbackReply{},
	}},
	{Name: "l2", Messages: []api.Message{
		&l2.BridgeDomainAddDelV2{}, &l2.BridgeDomainAddDelV2Reply{},
		&l2.BridgeDomainDump{}, &l2.BridgeDomainDetails{},
		&l2.SwInterfaceSetL2Bridge{}, &l2.SwInterfaceSetL2BridgeReply{},
		&l2.L2InterfaceVlanTagRewrite{}, &l2.L2InterfaceVlanTagRewriteReply{},
	}},
	{Name: "ip", Messages: []api.Message{
		&ip.IPTableAddDel{}, &ip.IPTableAddDelReply{},
		&ip.IPRouteAddDel{}, &ip.IPRouteAddDelReply{},
		&ip.IPAddressDump{}, &ip.IPAddressDetails{},
		&ip.SwInterfaceIP6EnableDisable{}, &ip.SwInterfaceIP6EnableDisableReply{},
		&arp.ProxyArpAddDel{}, &arp.ProxyArpAddDelReply{},
		&arp.ProxyArpDump{}, &arp.ProxyArpDetails{},
		&arp.ProxyArpIntfcEnableDisable{}, &arp.ProxyArpIntfcEnableDisableReply{},
		&ip6_nd.IP6ndProxyAddDel{}, &ip6_nd.IP6ndProxyAddDelReply{},
	}},
	{Name: "memif", Messages: []api.Message{
		&memif.MemifSocketFilenameAddDelV2{}, &memif.MemifSocketFilenameAddDelV2Reply{},
		&memif.MemifSocketFilenameDump{}, &memif.MemifSocketFilenameDetails{},
		&memif.MemifCreateV2{}, &memif.MemifCreateV2Reply{},
		&memif.MemifDelete{}, &memif.MemifDeleteReply{},
	}},
	{Name: "vhost_user", Optional: true, Messages: []api.Message{
		&vhost_user.CreateVhostUserIfV2{}, &vhost_user.CreateVhostUserIfV2Reply{},
		&vhost_user.DeleteVhostUserIf{}, &vhost_user.DeleteVhostUserIfReply{},
	}},
	{Name: "af_packet", Optional: true, Messages: []api.Message{
		&afpacket.AfPacketCreateV3{}, &afpacket.AfPacketCreateV3Reply{},
		&afpacket.AfPacketDelete{}, &afpacket.AfPacketDeleteReply{},
	}},
	{Name: "af_xdp", Optional: true, Messages: []api.Message{
		&afxdp.AfXdpCreateV3{}, &afxdp.AfXdpCreateV3Reply{},
		&afxdp.AfXdpDelete{}, &afxdp.AfXdpDeleteReply{},
	}},
	{Name: "acl", Optional: true, Messages: []api.Message{
		&acl.ACLAddReplace{}, &acl.ACLAddReplaceReply{},
		&acl.ACLDel{}, &acl.ACLDelReply{},
		&acl.ACLDump{}, &acl.ACLDetails{},
		&acl.ACLInterfaceSetACLList{}, &acl.ACLInterfaceSetACLListReply{},
	}},
	{Name: "avf", Optional: true, Messages: []api.Message{
		&avf.AvfCreate{}, &avf.AvfCreateReply{},
		&avf.AvfDelete{}, &avf.AvfDeleteReply{},
	}},
}

// Messages returns every message of every group.
func Messages() []api.Message {
	var all []api.Message
	for _, g := range Groups {
		all = append(all, g.Messages...)
	}
	return all
}

// Checker is the part of a govpp API channel Check needs.
type Checker interface {
	CheckCompatiblity(msgs ...api.Message) error
}

// IncompatibleError names the messages whose name and CRC the running VPP
// does not know.
type IncompatibleError struct {
	Messages []string // "name_crc" of each message that differs
}

func (e *IncompatibleError) Error() string {
	return fmt.Sprintf("VPP is incompatible with telcni's API bindings (VPP %s): %d messages differ: %s",
		VPPRelease, len(e.Messages), strings.Join(e.Messages, ", "))
}

// Report is the outcome of a successful Check.
type Report struct {
	// Missing lists optional groups the running VPP lacks (its plugin is
	// not loaded); networks that need them fail at ADD with this reason.
	Missing []string
}

// Check verifies the running VPP against Groups. A required group with any
// differing message makes VPP incompatible; an optional group is either
// wholly present or wholly absent (plugin not loaded), and a partial match
// is an incompatibility too.
func Check(ch Checker) (Report, error) {
	var rep Report
	var bad []string
	for _, g := range Groups {
		err := ch.CheckCompatiblity(g.Messages...)
		if err == nil {
			continue
		}
		var ce *api.CompatibilityError
		if !errors.As(err, &ce) {
			return rep, fmt.Errorf("check %s messages: %w", g.Name, err)
		}
		if g.Optional && len(ce.CompatibleMessages) == 0 {
			rep.Missing = append(rep.Missing, g.Name)
			continue
		}
		bad = append(bad, ce.IncompatibleMessages...)
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return rep, &IncompatibleError{Messages: bad}
	}
	return rep, nil
}
