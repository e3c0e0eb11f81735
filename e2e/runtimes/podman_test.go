// Package runtimes proves telcni under real container runtimes: podman
// (Debian bookworm's 4.3, CNI backend, runc) runs containers on a telcni
// network through the telcni plugin binary and a telcni-agent process.
//
// Needs root, podman, runc and the busybox rootfs `make deps-runtimes`
// builds into .cache/runtimes/rootfs (no image registry is reachable, so
// containers run with --rootfs). Without them the tests skip naming what
// is missing, unless TELCNI_REQUIRE_RUNTIMES=1 (make test-runtimes with
// podman installed), which makes a skip a failure.
//
// Nothing of the machine's podman setup is used: a private containers.conf
// (CONTAINERS_CONF), storage.conf, --root/--runroot/tmp dirs and a private
// CNI config dir holding only the test's conflist. The agent's masters are
// in a netns the test creates (-host-netns), holding a veth stand-in NIC.
package runtimes

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/internal/testbin"
)

var binDir string

func TestMain(m *testing.M) {
	testbin.Main(m, &binDir, map[string]string{
		"github.com/telcni/telcni/cmd/telcni":       "telcni",
		"github.com/telcni/telcni/cmd/telcni-agent": "telcni-agent",
		"github.com/telcni/telcni/cmd/telcnictl":    "telcnictl",
	})
}

// requireRuntime returns the rootfs, or skips (fails with
// TELCNI_REQUIRE_RUNTIMES=1) naming what is missing.
func requireRuntime(t *testing.T) string {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, bin := range []string{"podman", "runc", "conmon"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	rootfs := os.Getenv("TELCNI_RUNTIMES_ROOTFS")
	if rootfs == "" {
		rootfs, _ = filepath.Abs("../../.cache/runtimes/rootfs")
	}
	if _, err := os.Stat(filepath.Join(rootfs, "bin", "busybox")); err != nil {
		missing = append(missing, "the busybox rootfs "+rootfs)
	} else if real, err := filepath.EvalSymlinks(rootfs); err == nil {
		// runc refuses a rootfs path through a symlink ("invalid rootfs:
		// not an absolute path, or a symlink").
		rootfs = real
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("needs %s: run `make deps-runtimes` (as root)", strings.Join(missing, ", "))
		if os.Getenv("TELCNI_REQUIRE_RUNTIMES") == "1" {
			t.Fatal(msg + " (TELCNI_REQUIRE_RUNTIMES=1: this suite may not skip)")
		}
		t.Skip(msg)
	}
	return rootfs
}

// agentProc is a telcni-agent process serving the test's networks, its
// masters in a netns of the test's own.
type agentProc struct {
	dir, socket, hostNS string
	cmd                 *exec.Cmd
	done                chan struct{}
}

func startAgent(t *testing.T, networks map[string]string) *agentProc {
	t.Helper()
	a := &agentProc{dir: t.TempDir(), hostNS: netnstest.New(t)}
	netnstest.Uplink(t, a.hostNS, "up0") // the stand-in NIC: up0 (master) / up0p
	netDir := filepath.Join(a.dir, "networks")
	if err := os.MkdirAll(netDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, def := range networks {
		if err := os.WriteFile(filepath.Join(netDir, name), []byte(def), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a.socket = filepath.Join(a.dir, "agent.sock")
	logf, err := os.Create(filepath.Join(a.dir, "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	a.cmd = exec.Command(filepath.Join(binDir, "telcni-agent"), "-socket", a.socket, "-state-dir", filepath.Join(a.dir, "state"), "-legacy-state-dir", "",
		"-run-dir", filepath.Join(a.dir, "run"), "-networks-dir", netDir, "-host-netns", a.hostNS,
		"-vpp-api-socket", filepath.Join(a.dir, "no-vpp.sock"), "-log-level", "debug")
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a.done = make(chan struct{})
	go func() { _ = a.cmd.Wait(); logf.Close(); close(a.done) }() // owned: ends with the process
	t.Cleanup(a.stop)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(a.socket); err == nil {
			return a
		}
		select {
		case <-a.done:
			t.Fatalf("agent exited:\n%s", a.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent not serving after 30 s:\n%s", a.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (a *agentProc) stop() {
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
	}
}

func (a *agentProc) log() string {
	b, _ := os.ReadFile(filepath.Join(a.dir, "agent.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// ctl runs telcnictl against the agent.
func (a *agentProc) ctl(t *testing.T, command string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(binDir, "telcnictl"), "-socket", a.socket, command).CombinedOutput()
	if err != nil {
		t.Fatalf("telcnictl %s: %v\n%s", command, err, out)
	}
	return string(out)
}

// podman is a podman with private configuration, storage and CNI dirs.
type podman struct {
	dir, root, runroot, rootfs string
	env                        []string
}

func newPodman(t *testing.T, rootfs string, conflists map[string]string) *podman {
	t.Helper()
	// Not t.TempDir: podman's dirs must outlive every podman process the
	// cleanup below waits for, and are removed by it.
	dir, err := os.MkdirTemp("", "telcni-podman")
	if err != nil {
		t.Fatal(err)
	}
	p := &podman{dir: dir, root: filepath.Join(dir, "root"), runroot: filepath.Join(dir, "runroot"), rootfs: rootfs}
	cniDir := filepath.Join(dir, "cni")
	for _, d := range []string{p.root, p.runroot, cniDir, filepath.Join(dir, "tmp"), filepath.Join(dir, "home")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for name, list := range conflists {
		if err := os.WriteFile(filepath.Join(cniDir, name+".conflist"), []byte(list), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conf := fmt.Sprintf(`[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = %q
tmp_dir = %q

[network]
network_backend = "cni"
network_config_dir = %q
cni_plugin_dirs = [%q]
`, filepath.Join(dir, "events.log"), filepath.Join(dir, "tmp"), cniDir, binDir)
	storage := fmt.Sprintf("[storage]\ndriver = \"vfs\"\ngraphroot = %q\nrunroot = %q\n", p.root, p.runroot)
	for name, body := range map[string]string{"containers.conf": conf, "storage.conf": storage} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p.env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + filepath.Join(dir, "home"), "TMPDIR=" + filepath.Join(dir, "tmp"),
		"CONTAINERS_CONF=" + filepath.Join(dir, "containers.conf"),
		"CONTAINERS_STORAGE_CONF=" + filepath.Join(dir, "storage.conf")}
	t.Cleanup(func() { p.cleanup(t) })
	return p
}

// run runs podman with the private setup; it returns the combined output.
func (p *podman) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	full := append([]string{"--root", p.root, "--runroot", p.runroot, "--storage-driver", "vfs",
		"--cgroup-manager", "cgroupfs", "--runtime", "runc"}, args...)
	cmd := exec.CommandContext(ctx, "podman", full...)
	cmd.Env = p.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}

func (p *podman) must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := p.run(args...)
	if err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// runContainer starts `sleep 3600` from the busybox rootfs on network
// with a fixed IP and MAC. podman asks runc for RLIMIT_NOFILE 1048576 and
// RLIMIT_NPROC 1048576 by default, above the hard limits a process without
// CAP_SYS_RESOURCE may set (runc: "error setting rlimit type 7: operation
// not permitted"), so the test asks for low ones.
func (p *podman) runContainer(name, network, ip, mac string) (string, error) {
	args := []string{"run", "-d", "--name", name, "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
		"--network", network, "--ip", ip}
	if mac != "" {
		args = append(args, "--mac-address", mac)
	}
	args = append(args, "--rootfs", p.rootfs, "sleep", "3600")
	return p.run(args...)
}

// cleanup removes every container of the private storage (their CNI DEL
// runs), waits for podman's helpers (conmon, the exit command `podman
// container cleanup`) that name the private root to end, unmounts what
// may be left under it, then removes the dirs.
func (p *podman) cleanup(t *testing.T) {
	if out, err := p.run("rm", "-a", "-f", "-t", "0"); err != nil {
		t.Logf("cleanup: podman rm -a -f: %v\n%s", err, out)
	}
	deadline := time.Now().Add(15 * time.Second)
	for len(p.helpers()) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	for _, pid := range p.helpers() { // only processes naming our private dir
		t.Logf("cleanup: killing leftover podman helper %d", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		var mounts []string
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], p.dir+"/") {
				mounts = append(mounts, f[4])
			}
		}
		for i := len(mounts) - 1; i >= 0; i-- {
			_ = syscall.Unmount(mounts[i], syscall.MNT_DETACH)
		}
	}
	if err := os.RemoveAll(p.dir); err != nil {
		t.Logf("cleanup: %v", err)
	}
}

// helpers lists the pids of processes whose command line names the
// private podman dir (conmon, podman container cleanup).
func (p *podman) helpers() []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte(p.dir+"/")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

var (
	inetRE  = regexp.MustCompile(`inet (\d+\.\d+\.\d+\.\d+/\d+)`)
	etherRE = regexp.MustCompile(`link/ether ([0-9a-f:]{17})`)
)

// cniCache is what libcni cached for the container's attachment (podman
// 4.3 keeps libcni's default cache dir, /var/lib/cni): the CNI_ARGS and
// capability args podman passed. Empty when there is none.
func cniCache(network, id string) string {
	b, _ := os.ReadFile(filepath.Join("/var/lib/cni/results", network+"-"+id+"-eth0"))
	return string(b)
}

// TestPodmanFixedIPAndMAC runs containers with podman on a telcni macvlan
// network: each gets the IP and MAC it asks for (--ip, --mac-address),
// they talk to each other, a third asking for the first one's IP is
// refused with telcni's error naming the holder, and `podman rm -f` frees
// every address and record.
func TestPodmanFixedIPAndMAC(t *testing.T) {
	rootfs := requireRuntime(t)
	start := time.Now()
	a := startAgent(t, map[string]string{
		"fh.json": `{"name":"fronthaul","path":"macvlan","master":"up0","ipam":{"subnets":[{"cidr":"10.20.0.0/24","rangeStart":"10.20.0.100"}]}}`,
	})
	const network = "telcni-fh"
	p := newPodman(t, rootfs, map[string]string{
		network: fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[
			{"type":"telcni","agentSocket":%q,"network":"fronthaul","capabilities":{"ips":true,"mac":true}}]}`, network, a.socket),
	})
	if out := p.must(t, "network", "ls", "--format", "{{.Name}} {{.Driver}}"); !strings.Contains(out, network+" telcni") {
		t.Fatalf("podman does not list the telcni conflist as a network:\n%s", out)
	}

	type ctr struct{ name, ip, mac, id, netns string }
	tag := fmt.Sprint(os.Getpid())
	ctrs := []*ctr{
		{name: "tc-a-" + tag, ip: "10.20.0.10", mac: "02:00:00:20:00:10"},
		{name: "tc-b-" + tag, ip: "10.20.0.11", mac: "02:00:00:20:00:11"},
	}
	for _, c := range ctrs {
		t0 := time.Now()
		out, err := p.runContainer(c.name, network, c.ip, c.mac)
		if err != nil {
			t.Fatalf("podman run %s: %v\n%s\nagent log:\n%s", c.name, err, out, a.log())
		}
		c.id = p.must(t, "inspect", "--format", "{{.Id}}", c.name)
		c.netns = p.must(t, "inspect", "--format", "{{.NetworkSettings.SandboxKey}}", c.name)
		t.Logf("%s: podman run took %v (netns %s)", c.name, time.Since(t0).Round(time.Millisecond), c.netns)
	}

	// Inside each container: eth0 has its fixed address and MAC.
	for _, c := range ctrs {
		addr := p.must(t, "exec", c.name, "ip", "-o", "-4", "addr", "show", "eth0")
		link := p.must(t, "exec", c.name, "ip", "-o", "link", "show", "eth0")
		gotIP, gotMAC := "", ""
		if m := inetRE.FindStringSubmatch(addr); m != nil {
			gotIP = m[1]
		}
		if m := etherRE.FindStringSubmatch(link); m != nil {
			gotMAC = m[1]
		}
		if gotIP != c.ip+"/24" || gotMAC != c.mac {
			t.Fatalf("%s: eth0 has %q MAC %q, want %s/24 MAC %s\n"+
				"podman 4.3's CNI backend passes --ip and --mac-address as CNI_ARGS IP= and MAC=, not as the ips/mac capabilities; "+
				"the agent must honour those CNI_ARGS in attachment mode. libcni cache of this ADD:\n%s",
				c.name, gotIP, gotMAC, c.ip, c.mac, cniCache(network, c.id))
		}
	}
	pods := a.ctl(t, "pods")
	for _, c := range ctrs {
		if !strings.Contains(pods, c.ip+"/24") || !strings.Contains(pods, c.mac) {
			t.Errorf("telcnictl pods does not show %s with %s and %s:\n%s", c.name, c.ip, c.mac, pods)
		}
	}

	// Traffic between the containers, both ways, over the macvlans on up0.
	for i, c := range ctrs {
		peer := ctrs[1-i]
		if out, err := p.run("exec", c.name, "ping", "-c", "2", "-W", "2", peer.ip); err != nil {
			t.Errorf("%s ping %s: %v\n%s", c.name, peer.ip, err, out)
		}
	}

	// A third container asking for the first one's address is refused:
	// podman's error carries telcni's message naming the holder.
	third := "tc-c-" + tag
	out, err := p.runContainer(third, network, ctrs[0].ip, "")
	if err == nil {
		t.Fatalf("podman run %s with %s's address %s succeeded:\n%s", third, ctrs[0].name, ctrs[0].ip, out)
	}
	for _, want := range []string{`plugin type="telcni" failed (add)`, "address " + ctrs[0].ip + " is already held by /" + ctrs[0].name} {
		if !strings.Contains(out, want) {
			t.Errorf("podman run %s: error does not contain %q:\n%s", third, want, out)
		}
	}
	if ipam := a.ctl(t, "ipam"); !strings.Contains(ipam, "(2 addresses held)") {
		t.Errorf("after the refused ADD the agent should hold the two containers' addresses only:\n%s", ipam)
	}

	// podman rm -f frees everything: no address, no record, no netns, no
	// libcni cache, no link left beside the stand-in NIC.
	names := []string{third}
	for _, c := range ctrs {
		names = append(names, c.name)
	}
	t0 := time.Now()
	p.must(t, append([]string{"rm", "-f", "-t", "0"}, names...)...)
	t.Logf("podman rm -f of 3 containers took %v", time.Since(t0).Round(time.Millisecond))
	if ipam := a.ctl(t, "ipam"); !strings.Contains(ipam, "(0 addresses held)") {
		t.Errorf("addresses held after podman rm -f:\n%s", ipam)
	}
	if pods := strings.TrimSpace(a.ctl(t, "pods")); strings.Contains(pods, "\n") {
		t.Errorf("records left after podman rm -f:\n%s", pods)
	}
	if out := p.must(t, "ps", "-a", "-q"); out != "" {
		t.Errorf("containers left: %s", out)
	}
	for _, c := range ctrs {
		if _, err := os.Stat(c.netns); err == nil {
			t.Errorf("%s's netns %s left", c.name, c.netns)
		}
		if cache := cniCache(network, c.id); cache != "" {
			t.Errorf("%s's libcni cache left: %s", c.name, cache)
		}
	}
	links, err := netnstest.Handle(t, a.hostNS).LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, l := range links {
		if n := l.Attrs().Name; n != "lo" && n != "up0" && n != "up0p" {
			left = append(left, n)
		}
	}
	if len(left) > 0 {
		t.Errorf("links left in the agent's host netns: %v", left)
	}
	t.Logf("podman test body took %v", time.Since(start).Round(time.Millisecond))
}
