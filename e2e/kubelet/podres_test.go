package kubelet

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	dpv1 "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/telcni/telcni/podres"
)

const testResource = "example.com/fh_vf"

// devicePlugin advertises fake VFs (PCI addresses as device IDs, as
// sriov-network-device-plugin does) to the kubelet.
type devicePlugin struct {
	dpv1.UnimplementedDevicePluginServer
	ids []string
}

func (d *devicePlugin) GetDevicePluginOptions(context.Context, *dpv1.Empty) (*dpv1.DevicePluginOptions, error) {
	return &dpv1.DevicePluginOptions{}, nil
}

func (d *devicePlugin) ListAndWatch(_ *dpv1.Empty, s grpc.ServerStreamingServer[dpv1.ListAndWatchResponse]) error {
	var devs []*dpv1.Device
	for _, id := range d.ids {
		devs = append(devs, &dpv1.Device{ID: id, Health: dpv1.Healthy})
	}
	if err := s.Send(&dpv1.ListAndWatchResponse{Devices: devs}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

func (d *devicePlugin) Allocate(_ context.Context, r *dpv1.AllocateRequest) (*dpv1.AllocateResponse, error) {
	out := &dpv1.AllocateResponse{}
	for range r.ContainerRequests {
		out.ContainerResponses = append(out.ContainerResponses, &dpv1.ContainerAllocateResponse{})
	}
	return out, nil
}

// TestKubeletPodResources checks podres against a real kubelet: a device
// plugin advertises three VFs, a pod asks for two, and the kubelet's pod
// resources API, read by the client the agent uses, names the two the pod
// was given.
func TestKubeletPodResources(t *testing.T) {
	p := requireParts(t)
	env := cluster(t)
	n := startNode(t, env, p, "kl-devs")

	// The kubelet's device plugin directory is fixed, whatever --root-dir.
	sock := filepath.Join(filepath.Dir(dpv1.KubeletSocket), "telcni-test.sock")
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	vfs := []string{"0000:3b:02.1", "0000:3b:02.4", "0000:3b:02.5"}
	dpv1.RegisterDevicePluginServer(srv, &devicePlugin{ids: vfs})
	go srv.Serve(ln) // owned: stopped at cleanup
	t.Cleanup(func() { srv.Stop(); os.Remove(sock) })
	reg, err := grpc.NewClient("unix://"+dpv1.KubeletSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := dpv1.NewRegistrationClient(reg).Register(ctx, &dpv1.RegisterRequest{
		Version: dpv1.Version, Endpoint: filepath.Base(sock), ResourceName: testResource}); err != nil {
		t.Fatalf("register the device plugin with the kubelet: %v", err)
	}
	waitFor(t, 30*time.Second, "node allocatable "+testResource, func() bool {
		nd, err := env.Clientset.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		q := nd.Status.Allocatable[corev1.ResourceName(testResource)]
		return q.Value() == int64(len(vfs))
	}, nil)

	no := false
	grace := int64(1)
	two := resource.MustParse("2")
	_, err = env.Clientset.CoreV1().Pods(podNS).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "du-1", Namespace: podNS},
		Spec: corev1.PodSpec{NodeName: n.name, AutomountServiceAccountToken: &no, TerminationGracePeriodSeconds: &grace, EnableServiceLinks: &no,
			Containers: []corev1.Container{{Name: "c", Image: busyboxImage, ImagePullPolicy: corev1.PullNever, Command: []string{"/bin/sleep", "3600"},
				Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceName(testResource): two}}}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.waitRunning(t, 90*time.Second, "du-1")

	prSock := filepath.Join(n.dir, "kubelet", "pod-resources", "kubelet.sock")
	if _, err := os.Stat(prSock); err != nil {
		t.Fatalf("the kubelet's pod resources socket: %v", err)
	}
	c, err := podres.New(prSock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := c.Devices(ctx, podNS, "du-1", testResource)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !slices.Contains(vfs, got[0]) || !slices.Contains(vfs, got[1]) || got[0] == got[1] {
		t.Errorf("the kubelet reports %v for the pod, want two distinct of %v", got, vfs)
	}
	if other, err := c.Devices(ctx, podNS, "du-1", "example.com/none"); err != nil || len(other) != 0 {
		t.Errorf("another resource: %v, %v", other, err)
	}
	t.Logf("the kubelet allocated %v of %v to %s/du-1", got, vfs, podNS)
	n.deletePods(t, "du-1")
}
