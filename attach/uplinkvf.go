package attach

import (
	"context"
	"strconv"
)

// UplinkVF is an SR-IOV VF lent by the VF pool to a network's VPP uplink
// (uplink kinds avf and dpdk-vf with a pf). While a network holds it, no
// pod gets it.
type UplinkVF struct {
	Network string `json:"network"` // the network's key
	PF      string `json:"pf"`      // PF netdev name
	VF      int    `json:"vf"`      // VF index
	PCI     string `json:"pci"`     // VF PCI address
	// Driver is the VF's kernel driver, bound again when it is returned.
	Driver string `json:"driver,omitempty"`
	// HostName is the VF netdev's name before the lease, restored when
	// it is returned.
	HostName string `json:"hostName,omitempty"`
	// BindAs is the driver the VF is bound to while lent (vfio-pci).
	BindAs string `json:"bindAs,omitempty"`
	// Adopted: the borrower had the VF open already (VPP's DPDK plugin
	// took it at its start), so it was lent as it was and is given back
	// untouched: only marked free again.
	Adopted bool `json:"adopted,omitempty"`
}

// VFLender lends VFs of the node's SR-IOV pool to VPP uplinks (sriov.Path
// implements it; the agent wires it into vppagent). The lease's record is
// kept by the borrower in the attachment records of the network's pods
// (PutState, UplinkVFFromState), as a pod's VF is kept in its own.
type VFLender interface {
	// TakeForUplink lends network a free VF of PF pf, bound to bindAs.
	// adopt, when not nil, names VFs (by PCI address) the borrower has
	// open already (VPP's DPDK plugin took them at its start): the first
	// free one is lent as it is (Adopted), before any other. Other VFs
	// open through vfio are never lent. While network holds a VF, it
	// returns that one again (rebound to bindAs if it is not). An unknown
	// PF is CNI code 7, a PF without a free VF code 104.
	TakeForUplink(ctx context.Context, network, pf, bindAs string, adopt func(pci string) bool) (UplinkVF, error)
	// ReturnUplink rebinds the VF network holds to its kernel driver,
	// resets it and puts it back in the pool. Nothing held: nil. A VF still
	// open through vfio (VPP holds it) is not returned: an error says so
	// and the lease stays.
	ReturnUplink(ctx context.Context, network string) error
	// RetainUplinks makes leases exactly the VFs lent to uplinks (at agent
	// start-up, from the records). It is independent of the pods' own VFs
	// (attach.Retainer), whichever comes first.
	RetainUplinks(leases []UplinkVF)
}

// Keys of an uplink lease in the Interface.State of each pod on the
// network.
const (
	StateUplinkPF       = "uplinkPF"
	StateUplinkVF       = "uplinkVF"
	StateUplinkPCI      = "uplinkPCI"
	StateUplinkDriver   = "uplinkDriver"
	StateUplinkHostName = "uplinkHostName"
	StateUplinkBindAs   = "uplinkBindAs"
	StateUplinkAdopted  = "uplinkAdopted"
)

// PutState writes the lease into an interface's state.
func (u *UplinkVF) PutState(s map[string]string) {
	s[StateUplinkPF] = u.PF
	s[StateUplinkVF] = strconv.Itoa(u.VF)
	s[StateUplinkPCI] = u.PCI
	s[StateUplinkDriver] = u.Driver
	s[StateUplinkHostName] = u.HostName
	s[StateUplinkBindAs] = u.BindAs
	if u.Adopted {
		s[StateUplinkAdopted] = "true"
	}
}

// UplinkVFFromState reads the lease PutState wrote; ok is false when s
// holds none.
func UplinkVFFromState(network string, s map[string]string) (UplinkVF, bool) {
	vf, err := strconv.Atoi(s[StateUplinkVF])
	if s[StateUplinkPF] == "" || s[StateUplinkPCI] == "" || err != nil {
		return UplinkVF{}, false
	}
	return UplinkVF{Network: network, PF: s[StateUplinkPF], VF: vf, PCI: s[StateUplinkPCI],
		Driver: s[StateUplinkDriver], HostName: s[StateUplinkHostName], BindAs: s[StateUplinkBindAs],
		Adopted: s[StateUplinkAdopted] == "true"}, true
}
