// Package vpptest starts a private VPP for integration tests: its own
// runtime dir, API and stats sockets, no DPDK and no hugepages. Tests skip
// when no VPP binary is found (VPP_BIN, or vpp on PATH).
package vpptest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"text/template"
	"time"

	"go.fd.io/govpp/adapter/socketclient"
	"go.fd.io/govpp/binapi/vlib"
	"go.fd.io/govpp/core"
)

// Binary returns the VPP binary to test against, or "" when none exists.
func Binary() string {
	if b := os.Getenv("VPP_BIN"); b != "" {
		if _, err := os.Stat(b); err == nil {
			return b
		}
		return ""
	}
	if b, err := exec.LookPath("vpp"); err == nil {
		return b
	}
	return ""
}

// Skip skips t for a missing part of the VPP test setup, or fails it when
// TELCNI_REQUIRE_VPP is set (`make test-vpp` with a VPP found): there a
// skip would hide a regression behind a green run.
func Skip(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("TELCNI_REQUIRE_VPP") != "" {
		t.Fatalf("TELCNI_REQUIRE_VPP is set but: "+format, args...)
	}
	t.Skipf(format, args...)
}

// Options shape the test VPP.
type Options struct {
	// Busy keeps VPP's main loop polling without sleeping (benchmarks);
	// tests let it sleep when idle so a shared machine stays usable.
	Busy bool
	// Workers is the number of worker threads (0: main thread only).
	Workers int
	// Without lists plugins to leave out (e.g. "vhost_plugin.so").
	Without []string
	// With lists plugins to load besides the test set (e.g.
	// "avf_plugin.so").
	With []string
}

// VPP is one running test VPP.
type VPP struct {
	Dir         string // runtime dir, deleted at cleanup
	APISocket   string
	StatsSocket string
	CLISocket   string
	Conf        string // startup.conf path
	bin         string
	t           testing.TB
	cmd         *exec.Cmd
	done        chan struct{}
}

var seq atomic.Int32

const confTmpl = `unix {
  nodaemon
  cli-listen {{.Dir}}/cli.sock
  runtime-dir {{.Dir}}
  log {{.Dir}}/vpp.log
  coredump-size 0
{{- if not .Busy}}
  poll-sleep-usec 100
{{- end}}
}
api-segment { prefix {{.Prefix}} }
socksvr { socket-name {{.Dir}}/api.sock }
statseg {
  socket-name {{.Dir}}/stats.sock
  size 32m
  page-size 4k
}
memory {
  main-heap-size 512M
  main-heap-page-size 4k
}
buffers {
  buffers-per-numa 16384
  page-size 4k
}
{{- if .Workers}}
cpu { workers {{.Workers}} }
{{- end}}
plugins {
  plugin default { disable }
{{- range .Plugins}}
  plugin {{.}} { enable }
{{- end}}
}
`

var testPlugins = []string{"memif_plugin.so", "vhost_plugin.so", "af_packet_plugin.so", "af_xdp_plugin.so", "acl_plugin.so", "ping_plugin.so", "arping_plugin.so"}

// Start runs a VPP for t and stops it at cleanup; it skips t when no VPP
// binary is installed.
func Start(t testing.TB, o Options) *VPP {
	t.Helper()
	bin := Binary()
	if bin == "" {
		Skip(t, "VPP not found: set VPP_BIN to a VPP 25.10 binary (or put vpp on PATH; `make deps` unpacks ../shared/vpp when present); see deploy/vpp/README.md")
	}
	// Unix socket paths are limited to 108 bytes: keep the dir short.
	dir, err := os.MkdirTemp("", "tvpp")
	if err != nil {
		t.Fatalf("vpp runtime dir: %v", err)
	}
	v := &VPP{Dir: dir, APISocket: filepath.Join(dir, "api.sock"), StatsSocket: filepath.Join(dir, "stats.sock"),
		CLISocket: filepath.Join(dir, "cli.sock"), Conf: filepath.Join(dir, "startup.conf"), bin: bin, t: t}
	if err := WriteConf(v.Conf, dir, fmt.Sprintf("tvpp%d-%d", os.Getpid(), seq.Add(1)), o); err != nil {
		t.Fatalf("write startup.conf: %v", err)
	}
	t.Cleanup(func() {
		v.Stop()
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "vpp.out")); err == nil {
				t.Logf("vpp output:\n%s", tail(string(b), 4000))
			}
		}
		os.RemoveAll(dir)
	})
	v.Restart()
	return v
}

// WriteConf writes to path the startup.conf of a private VPP whose
// runtime dir (sockets, log) is dir and whose shared-memory prefix is
// prefix: no DPDK, 4 KiB pages (also for the soak, which runs one outside
// tests).
func WriteConf(path, dir, prefix string, o Options) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = template.Must(template.New("c").Parse(confTmpl)).Execute(f, map[string]any{
		"Dir": dir, "Busy": o.Busy, "Workers": o.Workers, "Plugins": plugins(o.Without, o.With), "Prefix": prefix,
	})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func plugins(without, with []string) []string {
	var out []string
	for _, p := range append(slices.Clone(testPlugins), with...) {
		if !slices.Contains(without, p) && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// Restart starts VPP (again, after Kill) and waits for its API socket.
func (v *VPP) Restart() {
	v.t.Helper()
	_ = os.Remove(v.APISocket)
	_ = os.Remove(v.StatsSocket)
	out, err := os.OpenFile(filepath.Join(v.Dir, "vpp.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		v.t.Fatalf("vpp output: %v", err)
	}
	cmd := exec.Command(v.bin, "-c", v.Conf)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		v.t.Fatalf("start vpp: %v", err)
	}
	done := make(chan struct{})
	go func() { // owner: this VPP; ends when the process exits
		_ = cmd.Wait()
		out.Close()
		close(done)
	}()
	v.cmd, v.done = cmd, done
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(v.APISocket); err == nil {
			if c, err := v.dial(); err == nil {
				c.Disconnect()
				return
			}
		}
		select {
		case <-done:
			b, _ := os.ReadFile(filepath.Join(v.Dir, "vpp.out"))
			v.t.Fatalf("vpp exited at start:\n%s", tail(string(b), 4000))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			v.t.Fatalf("vpp API socket %s not ready after 30s", v.APISocket)
		}
	}
}

func (v *VPP) dial() (*core.Connection, error) {
	ad := socketclient.NewVppClient(v.APISocket)
	ad.SetClientName("vpptest")
	return core.Connect(ad)
}

// Kill sends SIGKILL to VPP and waits for it to exit.
func (v *VPP) Kill() {
	if v.cmd == nil || v.cmd.Process == nil {
		return
	}
	_ = v.cmd.Process.Kill()
	<-v.done
	v.cmd = nil
}

// Stop ends VPP (SIGTERM, then SIGKILL).
func (v *VPP) Stop() {
	if v.cmd == nil || v.cmd.Process == nil {
		return
	}
	_ = v.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-v.done:
	case <-time.After(5 * time.Second):
		_ = v.cmd.Process.Kill()
		<-v.done
	}
	v.cmd = nil
}

// CLI runs a VPP debug CLI command over the API and returns its output.
func (v *VPP) CLI(cmd string) (string, error) {
	c, err := v.dial()
	if err != nil {
		return "", fmt.Errorf("connect to vpp: %w", err)
	}
	defer c.Disconnect()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := vlib.NewServiceClient(c).CliInband(ctx, &vlib.CliInband{Cmd: cmd})
	if err != nil {
		return "", fmt.Errorf("vpp cli %q: %w", cmd, err)
	}
	return r.Reply, nil
}

// MustCLI is CLI that fails the test on error.
func (v *VPP) MustCLI(cmd string) string {
	v.t.Helper()
	out, err := v.CLI(cmd)
	if err != nil {
		v.t.Fatal(err)
	}
	return out
}

// Contains reports whether the CLI output of cmd contains s.
func (v *VPP) Contains(cmd, s string) bool {
	out, err := v.CLI(cmd)
	return err == nil && strings.Contains(out, s)
}
