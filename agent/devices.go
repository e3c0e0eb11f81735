package agent

import (
	"context"

	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/podres"
)

// DeviceSource says which devices of a device plugin resource the kubelet
// allocated to a pod (podres.Client reads the kubelet's pod resources API).
type DeviceSource interface {
	Devices(ctx context.Context, namespace, name, resource string) ([]string, error)
}

// assignDevices gives every SR-IOV interface of the plan whose network
// names a device plugin resource (sriov.resourceName), and that no
// runtimeConfig.deviceID names, one of the devices the kubelet allocated
// to the pod for that resource: the first not held by another interface
// of the same pod (in this call or in the pod's other attachments).
func (a *Agent) assignDevices(ctx context.Context, p *plan, containerID string) error {
	var need []int
	for i, ip := range p.ifaces {
		if ip.deviceID == "" && ip.network.Path.IsSRIOV() && ip.network.SRIOV != nil && ip.network.SRIOV.ResourceName != "" {
			need = append(need, i)
		}
	}
	if len(need) == 0 {
		return nil
	}
	if a.devices == nil {
		// No kubelet to ask (no Kubernetes): the VF pool decides, as
		// without a resourceName.
		return nil
	}
	if p.pod.Name == "" {
		n := p.ifaces[need[0]].network
		return attach.Errorf(attach.CodeInvalidConfig, "network %s: sriov.resourceName %s: the call names no pod (CNI_ARGS K8S_POD_NAME), so the kubelet cannot say which device it allocated",
			n.Key(), n.SRIOV.ResourceName)
	}
	held := map[string]bool{}
	err := a.forEachRecord(func(rec *Attachment) {
		if rec.ContainerID != containerID || rec.Key == p.key {
			return
		}
		for _, r := range rec.Interfaces {
			if r.Request.DeviceID != "" {
				held[r.Request.DeviceID] = true
			}
		}
	})
	if err != nil {
		return attach.Errorf(attach.CodeIOFailure, "read the pod's records: %v", err)
	}
	allocated := map[string][]string{}
	for _, i := range need {
		n := p.ifaces[i].network
		res := n.SRIOV.ResourceName
		ids, ok := allocated[res]
		if !ok {
			if ids, err = a.devices.Devices(ctx, p.pod.Namespace, p.pod.Name, res); err != nil {
				return attach.Errorf(attach.CodeIOFailure, "network %s: sriov.resourceName %s: %v", n.Key(), res, err)
			}
			allocated[res] = ids
		}
		id, err := podres.Pick(res, ids, func(id string) bool { return held[id] })
		if err != nil {
			return attach.Errorf(attach.CodeNoFreeDevice, "network %s: sriov.resourceName %s: pod %s/%s: %v", n.Key(), res, p.pod.Namespace, p.pod.Name, err)
		}
		held[id] = true
		p.ifaces[i].deviceID = id
		a.log.Debug("device from the kubelet", "network", n.Key(), "resource", res, "device", id, "interface", p.ifaces[i].ifName)
	}
	return nil
}
