// Package testpmd runs DPDK's dpdk-testpmd as a memif peer for telcni's
// interop tests and benchmarks: it finds the binary that
// scripts/memif/deps.sh unpacks into .cache/dpdk, starts it in interactive
// mode with a bounded lifetime, sends it commands and parses its counters.
package testpmd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Install tells how to get testpmd; every "not found" error carries it.
const Install = "run `make deps-memif` (unpacks Debian's dpdk-dev 22.11 into .cache/dpdk) or set TESTPMD_ROOT to a tree holding usr/bin/dpdk-testpmd"

// Env is a testpmd installation.
type Env struct {
	Bin    string // dpdk-testpmd
	LibDir string // LD_LIBRARY_PATH for the librte libraries
	PMDs   []string
}

// Find locates testpmd with the memif PMD (see FindPMDs).
func Find() (*Env, error) {
	return FindPMDs("librte_net_memif.so.23.0", "librte_mempool_ring.so.23.0")
}

// FindPMDs locates testpmd and the named PMDs: $TESTPMD_ROOT, else
// .cache/dpdk/root above the current directory. EAL refuses to load
// plugins from a directory with a world-writable ancestor (e.g. a checkout
// under /tmp); the PMDs are then copied to a private directory first.
func FindPMDs(names ...string) (*Env, error) {
	root := os.Getenv("TESTPMD_ROOT")
	if root == "" {
		dir, err := os.Getwd()
		if err != nil {
			return nil, err
		}
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				root = filepath.Join(dir, ".cache", "dpdk", "root")
				break
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				return nil, fmt.Errorf("testpmd: no go.mod above the working directory; %s", Install)
			}
			dir = parent
		}
	}
	e := &Env{
		Bin:    filepath.Join(root, "usr", "bin", "dpdk-testpmd"),
		LibDir: filepath.Join(root, "usr", "lib", "x86_64-linux-gnu"),
	}
	if _, err := os.Stat(e.Bin); err != nil {
		return nil, fmt.Errorf("testpmd: %s not found; %s", e.Bin, Install)
	}
	pmdDir := filepath.Join(e.LibDir, "dpdk", "pmds-23.0")
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(pmdDir, n)); err != nil {
			return nil, fmt.Errorf("testpmd: PMD %s missing; %s", n, Install)
		}
	}
	if worldWritableAncestor(pmdDir) {
		priv := filepath.Join("/var/cache/telcni-dpdk-pmds")
		if err := os.MkdirAll(priv, 0o755); err != nil {
			return nil, fmt.Errorf("testpmd: private PMD dir: %w", err)
		}
		_ = os.Chmod(priv, 0o755)
		for _, n := range names {
			if err := copyFile(filepath.Join(pmdDir, n), filepath.Join(priv, n)); err != nil {
				return nil, fmt.Errorf("testpmd: copy PMD: %w", err)
			}
		}
		pmdDir = priv
	}
	for _, n := range names {
		e.PMDs = append(e.PMDs, filepath.Join(pmdDir, n))
	}
	return e, nil
}

func worldWritableAncestor(dir string) bool {
	for {
		st, err := os.Stat(dir)
		if err != nil || st.Mode().Perm()&0o002 != 0 {
			return true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return false
		}
		dir = parent
	}
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.tmp%d", dst, os.Getpid())
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

var runSeq atomic.Uint64

// Options describe one testpmd run.
type Options struct {
	Name     string   // unique per concurrent run (EAL file prefix)
	Lcores   string   // e.g. "0,1"
	MainCore int      // the lcore that runs the prompt; the other forwards
	Vdev     string   // e.g. "net_memif0,role=client,socket=/x,socket-abstract=no"
	Args     []string // testpmd application args (after --), e.g. --forward-mode=io
	Timeout  time.Duration
}

// Proc is a running testpmd.
type Proc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	mu     sync.Mutex
	out    bytes.Buffer
	change chan struct{} // closed and replaced whenever output arrives
	done   chan struct{} // closed when the reader has seen EOF
	cancel context.CancelFunc
	prefix string
}

// Start runs testpmd in interactive mode; it is killed when ctx ends or
// Timeout (default 60s) passes, whichever is first.
func (e *Env) Start(ctx context.Context, o Options) (*Proc, error) {
	if o.Timeout == 0 {
		o.Timeout = 60 * time.Second
	}
	if o.Lcores == "" {
		o.Lcores = "0,1"
	}
	// A unique EAL file prefix per run: a second testpmd under a prefix
	// still known to EAL would attach to the first as a secondary process.
	o.Name = fmt.Sprintf("%s-%d", o.Name, runSeq.Add(1))
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	args := []string{"--no-huge", "-m", "512", "--no-pci", "--file-prefix=" + o.Name,
		"-l", o.Lcores, "--main-lcore", strconv.Itoa(o.MainCore), "--log-level=pmd.net.memif:info"}
	for _, p := range e.PMDs {
		args = append(args, "-d", p)
	}
	args = append(args, "--vdev="+o.Vdev, "--", "-i")
	if !slices.ContainsFunc(o.Args, func(a string) bool { return strings.HasPrefix(a, "--total-num-mbufs") }) {
		// testpmd's default pool does not fit in the -m 512 heap.
		args = append(args, "--total-num-mbufs=32768")
	}
	args = append(args, o.Args...)
	// testpmd prints through stdio, fully buffered on a pipe: without
	// stdbuf its answers would only arrive when it exits.
	bin := e.Bin
	if sb, err := exec.LookPath("stdbuf"); err == nil {
		args = append([]string{"-o0", "-e0", e.Bin}, args...)
		bin = sb
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "LD_LIBRARY_PATH="+e.LibDir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	p := &Proc{cmd: cmd, stdin: stdin, change: make(chan struct{}), done: make(chan struct{}), cancel: cancel, prefix: o.Name}
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("start testpmd: %w", err)
	}
	// The reader goroutine ends when the process (and so the pipe) ends.
	go func() {
		defer close(p.done)
		r := bufio.NewReader(pr)
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			p.mu.Lock()
			p.out.Write(buf[:n])
			close(p.change)
			p.change = make(chan struct{})
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() {
		_ = cmd.Wait()
		pw.Close()
	}()
	if _, err := p.WaitFor("testpmd> ", 0, 30*time.Second); err != nil {
		p.Kill()
		return nil, fmt.Errorf("testpmd did not start: %w\n%s", err, p.Output())
	}
	return p, nil
}

// WorkerThread returns the thread id of testpmd's (single) forwarding
// lcore, so that callers can read the CPU time it used.
func (p *Proc) WorkerThread() (int, error) {
	pid := p.cmd.Process.Pid
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("testpmd threads: %w", err)
	}
	for _, e := range ents {
		comm, err := os.ReadFile(filepath.Join(dir, e.Name(), "comm"))
		if err != nil {
			continue
		}
		// DPDK 22.11 names it rte-worker-N; later releases lcore-worker-N.
		if strings.HasPrefix(string(comm), "rte-worker") || strings.HasPrefix(string(comm), "lcore-worker") {
			return strconv.Atoi(e.Name())
		}
	}
	return 0, fmt.Errorf("testpmd (pid %d) has no forwarding (rte-worker) thread", pid)
}

// Pid is testpmd's process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Output is everything testpmd printed so far.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// WaitFor waits until s appears in the output at or after byte offset from;
// it returns the offset just past it.
func (p *Proc) WaitFor(s string, from int, timeout time.Duration) (int, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		p.mu.Lock()
		b := p.out.Bytes()
		i := -1
		if from <= len(b) {
			i = bytes.Index(b[from:], []byte(s))
		}
		ch := p.change
		p.mu.Unlock()
		if i >= 0 {
			return from + i + len(s), nil
		}
		select {
		case <-ch:
		case <-p.done:
			return 0, fmt.Errorf("testpmd exited before printing %q", s)
		case <-t.C:
			return 0, fmt.Errorf("timeout waiting for %q", s)
		}
	}
}

// Cmd sends one command line and waits for the next prompt; it returns what
// the command printed.
func (p *Proc) Cmd(line string) (string, error) {
	return p.CmdUntil(line, "testpmd> ")
}

// CmdUntil sends one command line and waits until marker appears in what it
// prints (testpmd's prompt can come before the command's own output).
func (p *Proc) CmdUntil(line, marker string) (string, error) {
	p.mu.Lock()
	from := p.out.Len()
	p.mu.Unlock()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		return "", fmt.Errorf("testpmd %q: %w", line, err)
	}
	end, err := p.WaitFor(marker, from, 30*time.Second)
	if err == nil && marker != "testpmd> " {
		// Then wait for the prompt: until it is printed the command is
		// not finished, and the next command's answer would be confused
		// with this one's prompt (testpmd's "start" drops frames that
		// arrive before it is done).
		end, err = p.WaitFor("testpmd> ", end, 30*time.Second)
	}
	if err != nil {
		return "", fmt.Errorf("testpmd %q: %w", line, err)
	}
	out := p.Output()
	return out[from:end], nil
}

// Stats is one port's counters.
type Stats struct {
	RxPackets, RxMissed, RxErrors, TxPackets, TxErrors uint64
	At                                                 time.Time
}

var statRe = regexp.MustCompile(`(RX-packets|RX-missed|RX-errors|TX-packets|TX-errors):\s+(\d+)`)

// PortStats runs "show port stats 0".
func (p *Proc) PortStats() (Stats, error) {
	out, err := p.CmdUntil("show port stats 0", "Tx-bps:")
	st := Stats{At: time.Now()}
	if err != nil {
		return st, err
	}
	i := strings.Index(out, "NIC statistics for port 0")
	if i < 0 {
		return st, fmt.Errorf("no port statistics in %q", out)
	}
	for _, m := range statRe.FindAllStringSubmatch(out[i:], -1) {
		v, _ := strconv.ParseUint(m[2], 10, 64)
		switch m[1] {
		case "RX-packets":
			st.RxPackets = v
		case "RX-missed":
			st.RxMissed = v
		case "RX-errors":
			st.RxErrors = v
		case "TX-packets":
			st.TxPackets = v
		case "TX-errors":
			st.TxErrors = v
		}
	}
	return st, nil
}

// WaitLinkUp polls until the memif port reports link up.
func (p *Proc) WaitLinkUp(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		out, err := p.CmdUntil("show port info 0", "Link status: ")
		if err != nil {
			return err
		}
		if strings.Contains(out, "Link status: up") {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("testpmd: memif link did not come up")
}

// Quit asks testpmd to exit and waits (killing it after 10s).
func (p *Proc) Quit() {
	_, _ = io.WriteString(p.stdin, "stop\nquit\n")
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.Kill()
	}
	p.cancel()
	p.cleanup()
}

// cleanup removes EAL's runtime directory for this run's file prefix.
func (p *Proc) cleanup() {
	if p.prefix != "" && !strings.ContainsAny(p.prefix, "/.") {
		_ = os.RemoveAll(filepath.Join("/var/run/dpdk", p.prefix))
	}
}

// Kill ends testpmd at once and waits for it.
func (p *Proc) Kill() {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
	p.cancel()
	p.cleanup()
}
