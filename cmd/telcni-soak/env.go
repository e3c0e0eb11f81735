package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/vppagent"
	"github.com/telcni/telcni/vppagent/vpptest"
)

// Stand-in NICs of the node netns: veth pairs, both ends in the node.
var nics = []string{"nic0", "nic0p", "nic1", "nic1p"}

// buildBinaries builds the plugin and the agent into dir, as `go build`
// from the module (the soak is run from the checkout: `make soak`).
func buildBinaries(dir string) error {
	cmd := exec.Command("go", "build", "-o", dir+"/", "github.com/telcni/telcni/cmd/telcni", "github.com/telcni/telcni/cmd/telcni-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // static, as `make build` ships them
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build telcni telcni-agent (run from the checkout, or pass -bin-dir): %v\n%s", err, out)
	}
	return nil
}

// namespaces are the netns this run created (and only those are deleted).
type namespaces struct {
	mu    sync.Mutex
	names map[string]bool
}

func (n *namespaces) create(name string) (string, error) {
	path, err := netnstest.Create(name)
	if err != nil {
		return "", err
	}
	n.mu.Lock()
	n.names[name] = true
	n.mu.Unlock()
	return path, nil
}

func (n *namespaces) remove(name string) error {
	n.mu.Lock()
	owned := n.names[name]
	delete(n.names, name)
	n.mu.Unlock()
	if !owned {
		return nil
	}
	return netns.DeleteNamed(name)
}

func (n *namespaces) removeAll() {
	n.mu.Lock()
	names := n.names
	n.names = map[string]bool{}
	n.mu.Unlock()
	for name := range names {
		_ = netns.DeleteNamed(name)
	}
}

// handle opens a netlink handle in the netns at path.
func handle(path string) (*netlink.Handle, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	return netlink.NewHandleAt(ns)
}

// standInNICs creates the veth pairs nic0/nic0p and nic1/nic1p, up, in the
// node netns.
func standInNICs(node string) error {
	h, err := handle(node)
	if err != nil {
		return err
	}
	defer h.Close()
	for _, n := range []string{"nic0", "nic1"} {
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: n, MTU: 1500}, PeerName: n + "p"}); err != nil {
			return fmt.Errorf("create veth %s: %w", n, err)
		}
	}
	for _, n := range nics {
		l, err := h.LinkByName(n)
		if err != nil {
			return err
		}
		if err := h.LinkSetUp(l); err != nil {
			return fmt.Errorf("set %s up: %w", n, err)
		}
	}
	return nil
}

// linkNames lists the links of the netns at path, lo excluded.
func linkNames(path string) ([]string, error) {
	h, err := handle(path)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range links {
		if l.Attrs().Name != "lo" {
			out = append(out, l.Attrs().Name)
		}
	}
	return out, nil
}

// nftTables lists the nftables tables of the netns at path.
func nftTables(path string) ([]string, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return nil, err
	}
	ts, err := c.ListTables()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, t := range ts {
		out = append(out, t.Name)
	}
	return out, nil
}

// nftablesWorks reports whether the kernel takes an nftables table in the
// netns at path (this host's kernel may have no nf_tables).
func nftablesWorks(path string) bool {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return false
	}
	defer ns.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return false
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: "tcsoak-probe"}
	c.AddTable(t)
	if c.Flush() != nil {
		return false
	}
	c.DelTable(t)
	return c.Flush() == nil
}

// tmpfs mounts a size-limited tmpfs at dir (the agent's state dir).
func mountTmpfs(dir, size string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size="+size+",mode=0700"); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	return nil
}

// fillTmpfs writes zeros to path until the filesystem is full.
func fillTmpfs(path string) (int64, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		w, err := f.Write(buf)
		n += int64(w)
		if errors.Is(err, syscall.ENOSPC) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// proc is a child process (the agent or VPP) that can be killed and
// started again with the same command line.
type proc struct {
	name  string
	argv  []string
	log   string
	ready func(ctx context.Context, p *proc) error
	// crashed is called (in its own goroutine) when the process exits
	// without kill or stop: its exit status.
	crashed func(state string)

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	pid  int
	// starts counts incarnations.
	starts int
}

func (p *proc) start(ctx context.Context) error {
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group (a terminal's ^C reaches the soak, which stops
	// them in order), and killed if the soak dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	go func() { // owned: ends with the process
		err := cmd.Wait()
		logf.Close()
		close(done)
		p.mu.Lock()
		mine := p.cmd == cmd
		p.mu.Unlock()
		if mine && p.crashed != nil {
			p.crashed(fmt.Sprint(err))
		}
	}()
	p.mu.Lock()
	p.cmd, p.done, p.pid = cmd, done, cmd.Process.Pid
	p.starts++
	p.mu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		err := p.ready(rctx, p)
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("%s exited at start:\n%s", p.name, tail(p.log, 3000))
		case <-rctx.Done():
			return fmt.Errorf("%s not ready after 60 s (%v):\n%s", p.name, err, tail(p.log, 3000))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// stop sends SIGTERM, then SIGKILL after grace.
func (p *proc) stop(grace time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}

func (p *proc) currentPID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// rssMB reads VmRSS of pid in MiB.
func rssMB(pid int) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return -1
}

// agentClient talks to the agent's HTTP API on its unix socket.
type agentClient struct {
	socket string
	http   *http.Client
}

func newAgentClient(socket string) *agentClient {
	return &agentClient{socket: socket, http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		}}}}
}

func (c *agentClient) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(b))
	}
	if v == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// vppCLI runs a VPP CLI command through the agent (as telcnictl vpp does).
func (c *agentClient) vppCLI(ctx context.Context, command string) (string, error) {
	body, _ := json.Marshal(vppagent.CLIRequest{Command: command})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://agent"+vppagent.CLIPath, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var r vppagent.CLIReply
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return "", fmt.Errorf("vpp cli %q: %s: %w", command, resp.Status, err)
	}
	if r.Error != "" {
		return r.Output, fmt.Errorf("vpp cli %q: %s", command, r.Error)
	}
	return r.Output, nil
}

// metricValue scrapes one unlabelled metric from a Prometheus text page.
func metricValue(url, name string) (float64, bool) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

func freeLoopbackPort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// writeVPPConf writes a private VPP's startup.conf into dir, as the VPP
// tests do (vpptest.WriteConf).
func writeVPPConf(dir string) (string, error) {
	path := filepath.Join(dir, "startup.conf")
	return path, vpptest.WriteConf(path, dir, fmt.Sprintf("tcsoak%d", os.Getpid()), vpptest.Options{})
}

// findVPP runs scripts/vpp/find.sh from the checkout.
func findVPP() string {
	out, err := exec.Command("./scripts/vpp/find.sh").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
