package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/policy"
)

// PodAnnotations returns the annotations of pod: from the informer cache,
// or from the API when the cache does not have it yet (a pod just
// scheduled) or has another pod of that name (a replaced pod). With
// pod.UID set, the pod found must be that one.
func (c *Cluster) PodAnnotations(ctx context.Context, pod attach.Pod) (map[string]string, error) {
	p, err := c.pod(ctx, pod)
	if err != nil {
		return nil, err
	}
	return p.Annotations, nil
}

// PodPorts returns the named container ports of pod (its containers and
// sidecars), which MultiNetworkPolicy's named ports refer to.
func (c *Cluster) PodPorts(ctx context.Context, pod attach.Pod) ([]policy.ContainerPort, error) {
	p, err := c.pod(ctx, pod)
	if err != nil {
		return nil, err
	}
	var out []policy.ContainerPort
	for _, ctr := range append(slices.Clone(p.Spec.InitContainers), p.Spec.Containers...) {
		for _, cp := range ctr.Ports {
			if cp.Name == "" || cp.ContainerPort < 1 || cp.ContainerPort > 65535 {
				continue
			}
			proto := strings.ToLower(string(cp.Protocol))
			if proto == "" {
				proto = "tcp"
			}
			out = append(out, policy.ContainerPort{Name: cp.Name, Protocol: proto, Port: uint16(cp.ContainerPort)})
		}
	}
	return out, nil
}

func (c *Cluster) pod(ctx context.Context, pod attach.Pod) (*corev1.Pod, error) {
	p, err := c.pods.Pods(pod.Namespace).Get(pod.Name)
	if err == nil && (pod.UID == "" || string(p.UID) == pod.UID) {
		return p, nil
	}
	p, err = c.client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	if pod.UID != "" && string(p.UID) != pod.UID {
		return nil, fmt.Errorf("pod %s/%s has UID %s, not K8S_POD_UID %s: it was replaced", pod.Namespace, pod.Name, p.UID, pod.UID)
	}
	return p, nil
}

// WriteNetworkStatus sets the pod's k8s.v1.cni.cncf.io/network-status
// annotation (NPWG v1.3) with a merge patch of that one key, so that other
// writers' annotations stay; with the pod's UID in the patch it cannot land
// on a replaced pod. Conflicts and throttling are retried.
func (c *Cluster) WriteNetworkStatus(ctx context.Context, pod attach.Pod, status []api.NetworkStatus) error {
	st, err := json.Marshal(status)
	if err != nil {
		return fmt.Errorf("encode network-status: %w", err)
	}
	meta := map[string]any{"annotations": map[string]string{api.NetworkStatusAnnotation: string(st)}}
	if pod.UID != "" {
		meta["uid"] = pod.UID
	}
	patch, _ := json.Marshal(map[string]any{"metadata": meta})
	retriable := func(err error) bool {
		return apierrors.IsConflict(err) || apierrors.IsServerTimeout(err) || apierrors.IsTooManyRequests(err) || apierrors.IsTimeout(err)
	}
	err = retry.OnError(retry.DefaultBackoff, retriable, func() error {
		_, err := c.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "telcni-agent"})
		return err
	})
	if err != nil {
		return fmt.Errorf("patch network-status of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

// PodGone implements agent.PodLiveness: the cache answers for a pod that is
// there; a miss is confirmed with the API (the cache may lag).
func (c *Cluster) PodGone(ctx context.Context, pod attach.Pod) (bool, error) {
	if p, err := c.pods.Pods(pod.Namespace).Get(pod.Name); err == nil && (pod.UID == "" || string(p.UID) == pod.UID) {
		return false, nil
	}
	p, err := c.client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return pod.UID != "" && string(p.UID) != pod.UID, nil
}
