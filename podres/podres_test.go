package podres

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	podresv1 "k8s.io/kubelet/pkg/apis/podresources/v1"
)

// lister serves the pod resources API the way a kubelet does; with noGet
// it refuses Get as a kubelet without the KubeletPodResourcesGet gate.
// (e2e/kubelet checks the client against a real kubelet.)
type lister struct {
	podresv1.UnimplementedPodResourcesListerServer
	pods  []*podresv1.PodResources
	noGet bool
}

func (l *lister) List(context.Context, *podresv1.ListPodResourcesRequest) (*podresv1.ListPodResourcesResponse, error) {
	return &podresv1.ListPodResourcesResponse{PodResources: l.pods}, nil
}

func (l *lister) Get(_ context.Context, r *podresv1.GetPodResourcesRequest) (*podresv1.GetPodResourcesResponse, error) {
	if l.noGet {
		return nil, status.Error(codes.Unknown, "PodResources API Get method disabled")
	}
	for _, p := range l.pods {
		if p.Namespace == r.PodNamespace && p.Name == r.PodName {
			return &podresv1.GetPodResourcesResponse{PodResources: p}, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "pod %s not found in %s", r.PodName, r.PodNamespace)
}

func serve(t *testing.T, l *lister) string {
	sock := filepath.Join(t.TempDir(), "kubelet.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	podresv1.RegisterPodResourcesListerServer(s, l)
	go s.Serve(ln) // owned: stopped at cleanup
	t.Cleanup(s.Stop)
	return sock
}

func TestDevices(t *testing.T) {
	pods := []*podresv1.PodResources{{Namespace: "ran", Name: "du-1", Containers: []*podresv1.ContainerResources{
		{Name: "app", Devices: []*podresv1.ContainerDevices{
			{ResourceName: "example.com/fh_vf", DeviceIds: []string{"0000:3b:02.1"}},
			{ResourceName: "example.com/other", DeviceIds: []string{"0000:5e:00.2"}},
		}},
		{Name: "sidecar", Devices: []*podresv1.ContainerDevices{{ResourceName: "example.com/fh_vf", DeviceIds: []string{"0000:3b:02.4", "0000:3b:02.1"}}}},
	}}}
	for _, noGet := range []bool{false, true} {
		c, err := New(serve(t, &lister{pods: pods, noGet: noGet}))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx := context.Background()
		got, err := c.Devices(ctx, "ran", "du-1", "example.com/fh_vf")
		if want := []string{"0000:3b:02.1", "0000:3b:02.4"}; err != nil || !slices.Equal(got, want) {
			t.Errorf("noGet=%v: Devices = %v, %v; want %v (both containers, once each)", noGet, got, err, want)
		}
		if got, err := c.Devices(ctx, "ran", "du-1", "example.com/none"); err != nil || len(got) != 0 {
			t.Errorf("noGet=%v: a resource the pod has none of: %v, %v", noGet, got, err)
		}
		_, err = c.Devices(ctx, "ran", "du-9", "example.com/fh_vf")
		if noGet && !errors.Is(err, ErrNoPod) {
			t.Errorf("List fallback, unknown pod: %v, want ErrNoPod", err)
		}
		if err == nil || !strings.Contains(err.Error(), "du-9") {
			t.Errorf("noGet=%v: unknown pod: %v, want an error naming it", noGet, err)
		}
	}
	c, err := New(filepath.Join(t.TempDir(), "missing.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Devices(context.Background(), "ran", "du-1", "example.com/fh_vf"); err == nil || !strings.Contains(err.Error(), "missing.sock") {
		t.Errorf("no kubelet: %v, want an error naming the socket", err)
	}
}

func TestPick(t *testing.T) {
	held := map[string]bool{"a": true}
	if id, err := Pick("r/x", []string{"a", "b"}, func(id string) bool { return held[id] }); id != "b" || err != nil {
		t.Errorf("Pick = %q, %v; want b", id, err)
	}
	if _, err := Pick("r/x", nil, func(string) bool { return false }); err == nil || !strings.Contains(err.Error(), "limits: {r/x: 1}") {
		t.Errorf("none allocated: %v", err)
	}
	if _, err := Pick("r/x", []string{"a"}, func(id string) bool { return held[id] }); err == nil || !strings.Contains(err.Error(), "request one per interface") {
		t.Errorf("all held: %v", err)
	}
}
