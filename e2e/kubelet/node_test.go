package kubelet

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/telcni/telcni/internal/kubetest"
	"github.com/telcni/telcni/internal/netnstest"
)

// proc is a process the test started (agent, containerd, kubelet), its
// output in a log file.
type proc struct {
	name, logf string
	cmd        *exec.Cmd
	done       chan struct{}
}

func startProc(t *testing.T, name, logf string, bin string, args ...string) *proc {
	t.Helper()
	f, err := os.OpenFile(logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{name: name, logf: logf, cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = f, f
	// Killed with the test binary if it dies first.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); f.Close(); close(p.done) }() // ends with the process
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits (SIGKILL after timeout).
func (p *proc) stop(timeout time.Duration) {
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) kill() {
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// tail returns the last n lines of the log.
func (p *proc) tail(n int) string {
	b, _ := os.ReadFile(p.logf)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return fmt.Sprintf("--- last %d lines of %s:\n%s", len(lines), p.logf, strings.Join(lines, "\n"))
}

// node is one Kubernetes node: a kubelet and a containerd of the test's
// own (private root, state, socket and CNI dirs), and a telcni-agent whose
// masters (the stand-in NIC up0) are in a netns of the test's.
type node struct {
	name, dir, hostNS    string
	agentSock, ctrdSock  string
	agent, ctrd, kubelet *proc
	env                  *kubetest.Env
	parts                parts
	netnsBefore          map[string]bool // /var/run/netns/cni-* before containerd started
	hostDirsBefore       map[string]bool // hostDirs that existed before
}

// hostDirs are made by the kubelet or containerd whatever their flags say
// (the device plugin socket, the container log symlinks, the shim sockets
// and ctr's FIFOs); the cleanup removes those that did not exist before.
var hostDirs = []string{"/var/lib/kubelet", "/var/log/containers", "/run/containerd"}

// cniNetns lists the netns the CRI made (/var/run/netns/cni-<uuid>).
func cniNetns() map[string]bool {
	m := map[string]bool{}
	ents, _ := os.ReadDir("/var/run/netns")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "cni-") {
			m[e.Name()] = true
		}
	}
	return m
}

// newCNINetns lists the CRI netns made since the node started that are
// still there.
func (n *node) newCNINetns() []string {
	var out []string
	for name := range cniNetns() {
		if !n.netnsBefore[name] {
			out = append(out, name)
		}
	}
	return out
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// cannotRun: containerd or the kubelet does not start on this machine (a
// cgroup layout, a kernel feature it refuses): the test skips with their
// words, or fails with TELCNI_REQUIRE_KUBELET=1.
func cannotRun(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("TELCNI_REQUIRE_KUBELET") == "1" {
		t.Fatal(msg)
	}
	t.Skip("this machine cannot run the node: " + msg)
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool, diag func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			msg := ""
			if diag != nil {
				msg = "\n" + diag()
			}
			t.Fatalf("%s: not after %s%s", what, timeout, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func startNode(t *testing.T, env *kubetest.Env, p parts, name string) *node {
	t.Helper()
	// Not t.TempDir: a short path (unix sockets), and it must outlive the
	// processes the cleanup stops first.
	dir, err := os.MkdirTemp("", "tckl")
	if err != nil {
		t.Fatal(err)
	}
	n := &node{name: name, dir: dir, hostNS: netnstest.New(t), env: env, parts: p}
	t.Cleanup(n.cleanup)
	// Stand-in NICs (veth pairs upN / upNp), one per network: a pod's
	// interfaces on one L2 segment answer each other's ARP (ARP flux:
	// arp_ignore 0 in the pod) and replies come in on the wrong interface.
	for _, nic := range []string{"up0", "up1", "up2"} {
		netnstest.Uplink(t, n.hostNS, nic)
	}

	n.startAgent(t)
	n.netnsBefore = cniNetns()
	n.hostDirsBefore = map[string]bool{}
	for _, d := range hostDirs {
		if _, err := os.Stat(d); err == nil {
			n.hostDirsBefore[d] = true
		}
	}
	n.startContainerd(t)
	n.startKubelet(t)
	return n
}

func (n *node) startAgent(t *testing.T) {
	t.Helper()
	n.agentSock = filepath.Join(n.dir, "agent.sock")
	_ = os.Remove(n.agentSock)
	n.agent = startProc(t, "telcni-agent", filepath.Join(n.dir, "agent.log"), filepath.Join(binDir, "telcni-agent"),
		"-socket", n.agentSock, "-state-dir", filepath.Join(n.dir, "agent-state"), "-legacy-state-dir", "", "-run-dir", filepath.Join(n.dir, "agent-run"),
		"-host-netns", n.hostNS, "-kubeconfig", n.env.Kubeconfig, "-node-name", n.name,
		"-vpp-api-socket", filepath.Join(n.dir, "no-vpp.sock"), "-vpp-stats-socket", filepath.Join(n.dir, "no-vpp-stats.sock"),
		"-log-level", "debug")
	waitFor(t, 30*time.Second, "telcni-agent serving", func() bool {
		if n.agent.exited() {
			t.Fatalf("telcni-agent exited: %v\n%s", n.agent.cmd.ProcessState, n.agent.tail(40))
		}
		_, err := os.Stat(n.agentSock)
		return err == nil
	}, func() string { return n.agent.tail(40) })
}

// The pod-mode conflist: telcni makes eth0 on defaultNetwork (containerd
// 1.6 refuses a sandbox whose CNI result has no eth0 address: "failed to
// find network info for sandbox") and the annotation's networks.
func (n *node) conflist() string {
	return fmt.Sprintf(`{"cniVersion":%q,"name":"telcni","plugins":[{"type":"telcni","agentSocket":%q,"defaultNetwork":"podnet"}]}`,
		cniVersion, n.agentSock)
}

func (n *node) startContainerd(t *testing.T) {
	t.Helper()
	cniBin, cniConf := filepath.Join(n.dir, "cni-bin"), filepath.Join(n.dir, "cni-conf")
	for _, d := range []string{cniBin, cniConf} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The CRI adds a loopback network (go-cni WithLoNetwork): the
	// reference loopback plugin must be in bin_dir beside telcni.
	for _, b := range []string{"telcni", "loopback"} {
		if err := os.Symlink(filepath.Join(binDir, b), filepath.Join(cniBin, b)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(cniConf, "10-telcni.conflist"), []byte(n.conflist()), 0o644); err != nil {
		t.Fatal(err)
	}
	n.ctrdSock = filepath.Join(n.dir, "containerd.sock")
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = %q
        Root = %q
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
    max_conf_num = 1
`, filepath.Join(n.dir, "ctrd-root"), filepath.Join(n.dir, "ctrd-state"), n.ctrdSock, n.ctrdSock+".ttrpc",
		filepath.Join(n.dir, "ctrd-opt"), pauseImage, n.parts.runc, filepath.Join(n.dir, "runc"), cniBin, cniConf)
	cfgFile := filepath.Join(n.dir, "containerd.toml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	n.ctrd = startProc(t, "containerd", filepath.Join(n.dir, "containerd.log"), n.parts.containerd, "--config", cfgFile, "--log-level", "info")
	waitFor(t, 30*time.Second, "containerd serving", func() bool {
		if n.ctrd.exited() {
			cannotRun(t, "containerd exited at start: %v\n%s", n.ctrd.cmd.ProcessState, n.ctrd.tail(40))
		}
		_, err := n.ctrRun("version")
		return err == nil
	}, func() string { return n.ctrd.tail(40) })

	tarball := filepath.Join(n.dir, "images.tar")
	if err := writeImages(n.parts.busybox, tarball); err != nil {
		t.Fatal(err)
	}
	if out, err := n.ctrRun("images", "import", tarball); err != nil {
		t.Fatalf("ctr images import: %v\n%s\n%s", err, out, n.ctrd.tail(30))
	}
}

// ctrRun runs ctr against the node's containerd, namespace k8s.io.
func (n *node) ctrRun(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, n.parts.ctr, append([]string{"-a", n.ctrdSock, "-n", "k8s.io"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}

func (n *node) startKubelet(t *testing.T) {
	t.Helper()
	root := filepath.Join(n.dir, "kubelet")
	for _, d := range []string{root, filepath.Join(n.dir, "pod-logs"), filepath.Join(n.dir, "manifests")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	resolv := filepath.Join(n.dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: %d
readOnlyPort: 0
healthzPort: %d
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
failCgroupV1: false
oomScoreAdj: 0
containerRuntimeEndpoint: unix://%s
podLogsDir: %s
staticPodPath: %s
resolvConf: %s
syncFrequency: 5s
fileCheckFrequency: 5s
nodeStatusUpdateFrequency: 2s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%%"
  imagefs.available: "1%%"
  nodefs.inodesFree: "1%%"
serializeImagePulls: false
`, freePort(t), freePort(t), n.ctrdSock, filepath.Join(n.dir, "pod-logs"), filepath.Join(n.dir, "manifests"), resolv)
	cfgFile := filepath.Join(n.dir, "kubelet.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	n.kubelet = startProc(t, "kubelet", filepath.Join(n.dir, "kubelet.log"), n.parts.kubelet,
		"--config", cfgFile, "--kubeconfig", n.env.Kubeconfig, "--root-dir", root, "--cert-dir", filepath.Join(root, "pki"),
		"--hostname-override", n.name, "--v", "2")
	ctx := context.Background()
	waitFor(t, 90*time.Second, "node "+n.name+" Ready", func() bool {
		if n.kubelet.exited() {
			cannotRun(t, "kubelet exited at start: %v\n%s", n.kubelet.cmd.ProcessState, n.kubelet.tail(60))
		}
		nd, err := n.env.Clientset.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, c := range nd.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return true
			}
		}
		return false
	}, func() string {
		nd, _ := n.env.Clientset.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
		var conds string
		if nd != nil {
			for _, c := range nd.Status.Conditions {
				conds += fmt.Sprintf("  %s=%s %s: %s\n", c.Type, c.Status, c.Reason, c.Message)
			}
		}
		return "node conditions:\n" + conds + n.kubelet.tail(60) + "\n" + n.ctrd.tail(20)
	})
	t.Logf("kubelet: node %s Ready %s after start", n.name, time.Since(t0).Round(10*time.Millisecond))
}

// cleanup stops the kubelet, removes what is left in containerd (tasks,
// containers; the pods were deleted through the API by then, or the test
// failed), stops containerd, kills the shims serving it, unmounts what is
// left under the node's dir and removes it.
func (n *node) cleanup() {
	// Pods still there (the test failed): the kubelet tears them down
	// through the CRI (CNI DEL, netns removed) if it can.
	if n.kubelet != nil && !n.kubelet.exited() {
		ctx := context.Background()
		pods := n.env.Clientset.CoreV1().Pods(podNS)
		if l, err := pods.List(ctx, metav1.ListOptions{}); err == nil && len(l.Items) > 0 {
			for _, p := range l.Items {
				_ = pods.Delete(ctx, p.Name, metav1.DeleteOptions{})
			}
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
				if l, err := pods.List(ctx, metav1.ListOptions{}); err != nil || len(l.Items) == 0 {
					break
				}
			}
		}
	}
	n.kubelet.stop(15 * time.Second)
	var ctrIDs []string
	if n.ctrd != nil && !n.ctrd.exited() {
		if ids, err := n.ctrRun("containers", "ls", "-q"); err == nil {
			ctrIDs = strings.Fields(ids)
		}
		if ids, err := n.ctrRun("tasks", "ls", "-q"); err == nil {
			for _, id := range strings.Fields(ids) {
				_, _ = n.ctrRun("tasks", "kill", "-s", "SIGKILL", id)
			}
			for _, id := range strings.Fields(ids) {
				for i := 0; i < 50; i++ {
					if _, err := n.ctrRun("tasks", "rm", "-f", id); err == nil {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		}
		if ids, err := n.ctrRun("containers", "ls", "-q"); err == nil {
			for _, id := range strings.Fields(ids) {
				_, _ = n.ctrRun("containers", "rm", id)
			}
		}
	}
	n.ctrd.stop(15 * time.Second)
	n.agent.stop(10 * time.Second)
	for _, pid := range helpers(n.dir) { // shims: their command line names our socket
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		var mounts []string
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], n.dir+"/") {
				mounts = append(mounts, f[4])
			}
		}
		for i := len(mounts) - 1; i >= 0; i-- {
			_ = syscall.Unmount(mounts[i], syscall.MNT_DETACH)
		}
	}
	// What the CRI made for sandboxes that were never torn down.
	for _, name := range n.newCNINetns() {
		_ = netns.DeleteNamed(name)
	}
	for _, id := range ctrIDs {
		files, _ := filepath.Glob("/var/lib/cni/results/*-" + id + "-*")
		for _, f := range files {
			_ = os.Remove(f)
		}
	}
	for _, d := range hostDirs {
		if !n.hostDirsBefore[d] {
			_ = os.RemoveAll(d)
		}
	}
	if os.Getenv("TELCNI_KUBELET_KEEP") == "" {
		_ = os.RemoveAll(n.dir)
	}
}

// helpers lists processes whose command line names dir (containerd's
// shims), other than this one.
func helpers(dir string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte(dir+"/")) {
			pids = append(pids, pid)
		}
	}
	return pids
}
