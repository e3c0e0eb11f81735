package vppagent

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/telcni/telcni/vppagent/vpptest"
)

// testpmdTree is where scripts/vpp/dpdk-virtio.sh (make deps-vpp) unpacks
// Debian's dpdk-testpmd and the virtio_user PMD.
func testpmdTree(t *testing.T) (bin, libdir string) {
	t.Helper()
	root, err := filepath.Abs("../.cache/dpdk/root")
	if err != nil {
		t.Fatal(err)
	}
	bin = filepath.Join(root, "usr/bin/dpdk-testpmd")
	libdir = filepath.Join(root, "usr/lib/x86_64-linux-gnu")
	if _, err := os.Stat(filepath.Join(libdir, "dpdk/pmds-23.0/librte_net_virtio.so.23")); err != nil {
		t.Skip("dpdk-testpmd with virtio_user not found in .cache/dpdk: run `make deps-vpp`")
	}
	return bin, libdir
}

func TestVPPVhostUserPodPassesTraffic(t *testing.T) {
	bin, libdir := testpmdTree(t)
	v := vpptest.Start(t, vpptest.Options{})
	a := startAgent(t, v, recDir(t), shortTemp(t))
	ctx := context.Background()
	// One L2 network: a vhost-user pod (testpmd virtio_user, answering ARP
	// and ICMP echo) and a memif pod that pings it through VPP.
	vr, err := a.m.Add(ctx, PodInterface{ContainerID: cidA, IfName: "vh0", Network: Network{Name: "mixed", Kind: KindVhostUser}, IPs: []netip.Prefix{pfx("10.90.0.20/24")}})
	if err != nil {
		t.Fatal(err)
	}
	mr, err := a.m.Add(ctx, PodInterface{ContainerID: cidB, IfName: "m0", Netns: newNetns(t), Network: Network{Name: "mixed", Kind: KindMemif}, IPs: []netip.Prefix{pfx("10.90.0.21/24")}})
	if err != nil {
		t.Fatal(err)
	}
	if vr.DeviceInfo.Type != "vhost-user" || vr.DeviceInfo.Vhost.Mode != "client" {
		t.Fatalf("device-info %+v", vr.DeviceInfo)
	}
	pmds := filepath.Join(libdir, "dpdk/pmds-23.0")
	cmd := exec.Command(bin, "--no-huge", "-m", "512", "--no-pci", "--file-prefix", "tvh"+itoa(uint32(os.Getpid())),
		"-d", filepath.Join(pmds, "librte_mempool_ring.so.23"), "-d", filepath.Join(pmds, "librte_net_virtio.so.23"),
		"--vdev", "net_virtio_user0,path="+vr.DeviceInfo.Vhost.Path+",queues=1",
		"--", "--forward-mode=icmpecho", "-a", "--total-num-mbufs=8192", "--no-mlockall")
	cmd.Env = append(os.Environ(), "LD_LIBRARY_PATH="+libdir)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("testpmd:\n%s", out.String())
		}
	})
	p := startPods(t)
	pod := p.add(mr, "02:00:00:00:90:21")
	peer := netip.MustParseAddr("10.90.0.20")
	mustPing(t, pod, peer, peer, 1, 30*time.Second)
	if s := v.MustCLI("show vhost-user"); !strings.Contains(s, vr.DeviceInfo.Vhost.Path) {
		t.Errorf("show vhost-user lacks %s:\n%s", vr.DeviceInfo.Vhost.Path, s)
	}
}
