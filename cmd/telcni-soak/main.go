// Command telcni-soak churns pods through the real telcni plugin binary
// against a telcni-agent process while it injects faults (the agent and
// VPP killed with SIGKILL, pod netns deleted before DEL, DELs never sent
// and collected by CNI GC, duplicate ADDs, the state directory's tmpfs
// full), then proves nothing leaked and no address was ever held twice.
//
// It runs as root from the checkout (`make soak`); everything it makes
// lives in network namespaces it creates (a node netns with veth stand-in
// NICs, one netns per pod), a tmpfs it mounts and a temp dir: nothing
// touches the machine's own interfaces.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type config struct {
	pods, workers, cycles int
	duration              time.Duration
	seed                  int64
	vpp                   bool
	binDir                string
	tmpfsSize             string
	keep, verbose         bool
}

func main() {
	var c config
	flag.IntVar(&c.pods, "pods", 200, "pods kept alive and churned (each slot is DELed and ADDed again as a new container)")
	flag.DurationVar(&c.duration, "duration", 5*time.Minute, "how long to churn (then everything is DELed and audited)")
	flag.IntVar(&c.cycles, "cycles", 0, "stop after this many pod ADDs (0: only -duration bounds the run)")
	flag.Int64Var(&c.seed, "seed", 0, "random seed (0: from the clock; printed)")
	flag.BoolVar(&c.vpp, "vpp", false, "also a memif network served by a private VPP (scripts/vpp/find.sh), and VPP killed as a fault")
	flag.IntVar(&c.workers, "workers", 8, "concurrent workers (a runtime's parallel CNI calls)")
	flag.StringVar(&c.binDir, "bin-dir", "", "directory holding telcni and telcni-agent (default: go build them into a temp dir)")
	flag.StringVar(&c.tmpfsSize, "tmpfs-size", "16m", "size of the tmpfs holding the agent's state dir")
	flag.BoolVar(&c.keep, "keep", false, "keep the work dir (agent log, VPP log) after the run")
	flag.BoolVar(&c.verbose, "v", false, "log every fault and every error as it happens")
	flag.Parse()
	if c.seed == 0 {
		c.seed = time.Now().UnixNano()
	}
	if c.pods < 1 || c.workers < 1 {
		fmt.Fprintln(os.Stderr, "telcni-soak: -pods and -workers must be at least 1")
		os.Exit(2)
	}
	ok, err := run(c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "telcni-soak:", err)
		os.Exit(1)
	}
	if !ok {
		os.Exit(1)
	}
}

func run(c config) (bool, error) {
	if os.Geteuid() != 0 {
		return false, errors.New("needs root (network namespaces, tmpfs)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// Output piped into a reader that goes away (| head) must not kill the
	// soak before it has removed its namespaces, processes and mount.
	signal.Ignore(syscall.SIGPIPE)

	work, err := os.MkdirTemp("", "tcsoak") // short: unix socket paths are limited to 108 bytes
	if err != nil {
		return false, err
	}
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
		if c.keep {
			fmt.Printf("soak: work dir kept: %s\n", work)
		} else {
			os.RemoveAll(work)
		}
	}()
	s := newSoak(c, work)
	cleanups = append(cleanups, s.ns.removeAll)

	if c.binDir == "" {
		c.binDir = filepath.Join(work, "bin")
		start := time.Now()
		if err := buildBinaries(c.binDir); err != nil {
			return false, err
		}
		fmt.Printf("soak: built telcni and telcni-agent in %s (%.1fs)\n", c.binDir, time.Since(start).Seconds())
	}
	s.cfg.binDir = c.binDir
	for _, b := range []string{"telcni", "telcni-agent"} {
		if _, err := os.Stat(filepath.Join(c.binDir, b)); err != nil {
			return false, fmt.Errorf("-bin-dir: %w", err)
		}
	}

	// The node: a netns with two veth stand-in NICs.
	if s.node, err = s.ns.create(fmt.Sprintf("tcsoak%d-node", os.Getpid())); err != nil {
		return false, err
	}
	if err := standInNICs(s.node); err != nil {
		return false, err
	}
	s.nft = nftablesWorks(s.node)

	// The agent's state dir on its own small tmpfs.
	s.stateDir = filepath.Join(work, "state")
	if err := mountTmpfs(s.stateDir, c.tmpfsSize); err != nil {
		return false, err
	}
	cleanups = append(cleanups, func() { _ = syscall.Unmount(s.stateDir, syscall.MNT_DETACH) })

	if c.vpp {
		bin := os.Getenv("VPP_BIN")
		if bin == "" {
			bin = findVPP()
		}
		if bin == "" {
			return false, errors.New("-vpp: no VPP found (scripts/vpp/find.sh: VPP_BIN, vpp on PATH, /opt/vpp, .cache/vpp)")
		}
		if err := s.startVPP(ctx, bin); err != nil {
			return false, err
		}
		cleanups = append(cleanups, func() {
			s.vpp.stop(5 * time.Second)
			if !c.keep {
				os.RemoveAll(s.vppDir)
			}
		})
		fmt.Printf("soak: VPP %s, private instance in %s\n", bin, s.vppDir)
	}
	if err := s.writeNetworks(); err != nil {
		return false, err
	}
	if err := s.startAgent(ctx); err != nil {
		return false, err
	}
	cleanups = append(cleanups, func() { s.agent.stop(30 * time.Second) })
	s.superviseCrashes(ctx)
	nets := "soak-a (macvlan nic0, fixed addresses for a share of the pods), soak-b (macvlan nic1"
	if s.nft {
		nets += ", nftables firewall)"
	} else {
		nets += "; no firewall: this kernel has no nf_tables)"
	}
	if c.vpp {
		nets += ", soak-m (memif through VPP)"
	}
	fmt.Printf("soak: pods=%d workers=%d duration=%s cycles=%d seed=%d vpp=%v\nsoak: networks %s\n", c.pods, c.workers, c.duration, c.cycles, c.seed, c.vpp, nets)
	s.rssStart = rssMB(s.agent.currentPID())
	s.goStart, s.goStartOK = metricValue("http://"+s.metrics+"/metrics", "go_goroutines")

	// Churn with faults, bounded by time (and count).
	cctx, cancel := context.WithTimeout(ctx, c.duration)
	defer cancel()
	s.churn(cctx)
	interrupted := ctx.Err() != nil

	// Everything DELed or collected by GC, then audited.
	s.teardown(context.WithoutCancel(ctx))
	s.audit(context.WithoutCancel(ctx))
	ok, verdict := s.report()
	if interrupted {
		fmt.Println("soak: interrupted")
		verdict = append(verdict, "soak: interrupted")
		ok = false
	}
	if !ok {
		fmt.Printf("soak: agent log (tail):\n%s\n", indent(tail(s.agent.log, 4000)))
		fmt.Printf("soak: FAILED (repeated from above):\n%s\n", strings.Join(verdict, "\n"))
	}
	return ok, nil
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ")
}
