package vppagent

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/telcni/telcni/internal/testpmd"
	"github.com/telcni/telcni/vppagent/vpptest"
)

// testpmdTree finds the dpdk-testpmd and virtio_user PMD that
// scripts/vpp/dpdk-virtio.sh (make deps-vpp) unpacks into .cache/dpdk.
func testpmdTree(t *testing.T) *testpmd.Env {
	t.Helper()
	env, err := testpmd.FindPMDs("librte_mempool_ring.so.23.0", "librte_net_virtio.so.23.0")
	if err != nil {
		vpptest.Skip(t, "dpdk-testpmd with virtio_user: %v (run `make deps-vpp`)", err)
	}
	return env
}

func TestVPPVhostUserPodPassesTraffic(t *testing.T) {
	// VPP as the vhost-user server (the default: the pod connects) and as
	// the client (the pod's testpmd makes the socket).
	for _, vppMode := range []string{"server", "client"} {
		t.Run("vpp-"+vppMode, func(t *testing.T) { vhostTraffic(t, vppMode) })
	}
}

func vhostTraffic(t *testing.T, vppMode string) {
	tp := testpmdTree(t)
	v := vpptest.Start(t, vpptest.Options{})
	a := startAgent(t, v, nil, shortTemp(t))
	ctx := context.Background()
	// One L2 network: a vhost-user pod (testpmd virtio_user, answering ARP
	// and ICMP echo) and a memif pod that pings it through VPP.
	vr, err := a.m.Add(ctx, PodInterface{ContainerID: cidA, IfName: "vh0", Network: Network{Name: "mixed", Kind: KindVhostUser, Vhost: VhostOptions{Mode: vppMode}}, IPs: []netip.Prefix{pfx("10.90.0.20/24")}})
	if err != nil {
		t.Fatal(err)
	}
	mr, err := a.m.Add(ctx, PodInterface{ContainerID: cidB, IfName: "m0", Netns: newNetns(t), Network: Network{Name: "mixed", Kind: KindMemif}, IPs: []netip.Prefix{pfx("10.90.0.21/24")}})
	if err != nil {
		t.Fatal(err)
	}
	podMode := map[string]string{"server": "client", "client": "server"}[vppMode]
	if vr.DeviceInfo.Type != "vhost-user" || vr.DeviceInfo.Vhost.Mode != podMode {
		t.Fatalf("device-info %+v, want pod mode %s", vr.DeviceInfo.Vhost, podMode)
	}
	vdev := "net_virtio_user0,path=" + vr.DeviceInfo.Vhost.Path + ",queues=1"
	if podMode == "server" {
		vdev += ",server=1"
	}
	// VPP maps the pod's memory through the fds virtio_user sends, so it
	// must be shareable: hugepage memfds (--in-memory), not --no-huge's
	// anonymous memory; in one file, since vhost-user takes at most 8
	// memory regions.
	if free := freeHugepages(); free < 64 {
		vpptest.Skip(t, "testpmd's virtio_user needs 64 free 2 MB hugepages, %d free: `make deps-vpp` reserves 128 (vm.nr_hugepages)", free)
	}
	cmd := exec.Command(tp.Bin, "--in-memory", "--single-file-segments", "-m", "128", "--no-pci", "--file-prefix", "tvh"+vppMode+itoa(uint32(os.Getpid())),
		"-d", tp.PMDs[0], "-d", tp.PMDs[1],
		"--vdev", vdev,
		"--", "--forward-mode=icmpecho", "-a", "--total-num-mbufs=8192", "--no-mlockall")
	cmd.Env = append(os.Environ(), "LD_LIBRARY_PATH="+tp.LibDir)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// testpmd runs until Enter: hold its stdin open until cleanup.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
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
	pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := pod.ping(pctx, peer, peer, 1); err != nil {
		for _, c := range []string{"show interface", "show errors", "show vhost-user", "show l2fib verbose"} {
			t.Logf("%s:\n%s", c, v.MustCLI(c))
		}
		t.Fatalf("ping through VPP to the vhost-user pod: %v", err)
	}
	if s := v.MustCLI("show vhost-user"); !strings.Contains(s, vr.DeviceInfo.Vhost.Path) {
		t.Errorf("show vhost-user lacks %s:\n%s", vr.DeviceInfo.Vhost.Path, s)
	}
}

func freeHugepages() int {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "HugePages_Free:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}
