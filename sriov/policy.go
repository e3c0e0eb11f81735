package sriov

import (
	"context"
	"fmt"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/kernelpath"
	"github.com/telcni/telcni/policy"
)

// EnforcePolicy puts a MultiNetworkPolicy on a kernel VF as the kernel
// paths do: nftables chains in the pod's netns, beside the network's
// firewall, removed with it at DEL. A DPDK VF bypasses the kernel, so a
// policy that isolates one is refused (the controller logs it; nothing
// would filter its traffic).
func (p *Path) EnforcePolicy(ctx context.Context, rec *attach.Record, r policy.Rules) error {
	if rec.Network.Path == api.PathSRIOVDPDK {
		if r.Open() {
			return nil
		}
		return fmt.Errorf("network %s: a MultiNetworkPolicy selects interface %s, but path %s cannot enforce it (the DPDK application drives the VF, no kernel sees its packets)",
			rec.Network.Key(), rec.IfName, rec.Network.Path)
	}
	return kernelpath.EnforcePolicyInPod(rec, r)
}
