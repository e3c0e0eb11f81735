// Package podres asks the kubelet which devices a device plugin allocated to
// a pod (the kubelet's pod resources API, the socket Multus reads for the
// same reason): an SR-IOV network names the device plugin's resource
// (sriov.resourceName, or the NAD's k8s.v1.cni.cncf.io/resourceName
// annotation), and the VF the pod gets is one the kubelet gave that pod, so
// telcni and the device plugin never disagree on who holds a VF.
package podres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	podresv1 "k8s.io/kubelet/pkg/apis/podresources/v1"
)

// DefaultSocket is the kubelet's pod resources socket (--root-dir
// /var/lib/kubelet).
const DefaultSocket = "/var/lib/kubelet/pod-resources/kubelet.sock"

// Client reads pod device allocations from one kubelet.
type Client struct {
	socket string
	conn   *grpc.ClientConn
	api    podresv1.PodResourcesListerClient
}

// New returns a client of the kubelet's socket; it connects on first use,
// so an agent can start before the kubelet.
func New(socket string) (*Client, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("pod resources socket %s: %w", socket, err)
	}
	return &Client{socket: socket, conn: conn, api: podresv1.NewPodResourcesListerClient(conn)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Socket is the kubelet socket the client reads.
func (c *Client) Socket() string { return c.socket }

// Devices returns the device IDs of resource the kubelet allocated to the
// pod, over all its containers, in the kubelet's order. Get (one pod) is
// used where the kubelet serves it (feature KubeletPodResourcesGet), List
// otherwise.
func (c *Client) Devices(ctx context.Context, namespace, name, resource string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var pod *podresv1.PodResources
	r, err := c.api.Get(ctx, &podresv1.GetPodResourcesRequest{PodNamespace: namespace, PodName: name})
	switch {
	case err == nil:
		pod = r.GetPodResources()
	case status.Code(err) == codes.Unimplemented || status.Code(err) == codes.Unknown:
		// Kubelets without the Get gate answer Unknown ("... feature gate
		// not enabled"); List has been GA since 1.20.
		l, lerr := c.api.List(ctx, &podresv1.ListPodResourcesRequest{})
		if lerr != nil {
			return nil, fmt.Errorf("kubelet pod resources (%s): list: %w", c.socket, lerr)
		}
		for _, p := range l.GetPodResources() {
			if p.GetNamespace() == namespace && p.GetName() == name {
				pod = p
			}
		}
	default:
		return nil, fmt.Errorf("kubelet pod resources (%s): pod %s/%s: %w", c.socket, namespace, name, err)
	}
	if pod == nil {
		return nil, fmt.Errorf("kubelet pod resources (%s): %w: %s/%s", c.socket, ErrNoPod, namespace, name)
	}
	var ids []string
	for _, ctr := range pod.GetContainers() {
		for _, d := range ctr.GetDevices() {
			if d.GetResourceName() != resource {
				continue
			}
			for _, id := range d.GetDeviceIds() {
				if !slices.Contains(ids, id) {
					ids = append(ids, id)
				}
			}
		}
	}
	return ids, nil
}

// ErrNoPod: the kubelet knows no such pod.
var ErrNoPod = errors.New("the kubelet reports no such pod")

// Pick chooses the device for one interface: the first of allocated that
// is not in use (by the pod's other interfaces). It says why when there is
// none.
func Pick(resource string, allocated []string, inUse func(id string) bool) (string, error) {
	if len(allocated) == 0 {
		return "", fmt.Errorf("the kubelet allocated the pod no %s device: request it in a container's resources (limits: {%s: 1})", resource, resource)
	}
	for _, id := range allocated {
		if !inUse(id) {
			return id, nil
		}
	}
	return "", fmt.Errorf("all %d %s devices the kubelet allocated the pod (%v) are taken by its other interfaces: request one per interface", len(allocated), resource, allocated)
}
