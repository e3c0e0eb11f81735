// Command telcni-agent is the node agent: it owns IPAM state, network
// definitions and the paths that make pod interfaces, and answers the
// telcni plugin's calls on a root-only unix socket.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/telcni/telcni/agent"
	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/cni"
	"github.com/telcni/telcni/delegate"
	"github.com/telcni/telcni/ipam"
	"github.com/telcni/telcni/kernelpath"
	"github.com/telcni/telcni/kube"
	"github.com/telcni/telcni/netsource"
	"github.com/telcni/telcni/podres"
	"github.com/telcni/telcni/policy"
	"github.com/telcni/telcni/sriov"
	"github.com/telcni/telcni/vppagent"
)

// The kernel and VPP paths enforce MultiNetworkPolicy.
var (
	_ agent.PolicyEnforcer = (*kernelpath.Path)(nil)
	_ agent.PolicyEnforcer = (*vppagent.Path)(nil)
	_ agent.PolicyEnforcer = (*sriov.Path)(nil)
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "telcni-agent:", err)
		os.Exit(1)
	}
}

// connectCluster connects to Kubernetes when a kubeconfig or the in-cluster
// config is there; nil means the embedded default (no Kubernetes).
func connectCluster(ctx context.Context, kubeconfig string, cfg kube.Config) (*kube.Cluster, error) {
	rc, err := kube.RESTConfig(kubeconfig)
	if err != nil || rc == nil {
		return nil, err
	}
	c, err := kube.New(rc, cfg)
	if err != nil {
		return nil, err
	}
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// policySource gives the agent's ADD the controller's view of policies.
type policySource struct{ pc *kube.PolicyController }

func (s policySource) RulesFor(ctx context.Context, pi agent.PolicyInterface) (policy.Rules, bool) {
	return s.pc.RulesFor(ctx, kube.PolicyTarget(pi))
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func run() error {
	socket := flag.String("socket", cni.DefaultSocket, "unix socket the plugin calls")
	// The records describe links, netns and VPP objects, none of which
	// outlive the node's boot: on a tmpfs (/run) the state lives exactly
	// as long, a reboot starts clean, and no commit waits for a disk
	// (fsync was half of an attachment's ADD time in the agent).
	stateDir := flag.String("state-dir", "/run/telcni/state", "directory of the agent's database (a tmpfs: its records describe kernel and VPP state that a reboot clears)")
	legacyState := flag.String("legacy-state-dir", legacyStateDir, "where an earlier agent kept its database on disk: adopted into -state-dir when that has none (an upgrade; empty: never)")
	netDir := flag.String("networks-dir", "/etc/telcni/networks", "directory of network definitions (JSON or YAML)")
	hostNetns := flag.String("host-netns", "", "netns holding the networks' master devices (default: the agent's own)")
	logLevel := flag.String("log-level", "info", "debug, info, warn or error")
	vppAPI := flag.String("vpp-api-socket", vppagent.DefaultAPISocket, "VPP binary API socket (memif and vhostuser networks)")
	vppStats := flag.String("vpp-stats-socket", vppagent.DefaultStatsSocket, "VPP stats socket (pod interface counters)")
	metricsAddr := flag.String("metrics-listen", "", "address serving Prometheus metrics on /metrics (e.g. 127.0.0.1:9721; empty: off)")
	runDir := flag.String("run-dir", vppagent.DefaultRunDir, "directory of per-pod sockets (memif files, vhost-user)")
	syncEvery := flag.Duration("sync-interval", 10*time.Second, "how often host VLAN/VXLAN links are reconciled with network definitions")
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the cluster (empty: the in-cluster config when run in a pod, else no Kubernetes: networks from -networks-dir, IPAM on this node)")
	nodeName := flag.String("node-name", os.Getenv("NODE_NAME"), "this node's Node name (Kubernetes; default $NODE_NAME)")
	globalNS := flag.String("global-namespaces", "", "comma-separated namespaces whose NetworkAttachmentDefinitions every pod may use (Kubernetes)")
	leaseNS := flag.String("lease-namespace", "telcni-system", "namespace of the IPAM controller's leader-election Lease (Kubernetes)")
	cniBin := flag.String("cni-bin-dir", "/opt/cni/bin", "where delegate networks' CNI plugins are (colon-separated)")
	cniConf := flag.String("cni-conf-dir", "/etc/cni/net.d", "where conflists named by delegate networks are")
	podResources := flag.String("pod-resources-socket", podres.DefaultSocket, "the kubelet's pod resources socket: which SR-IOV VFs the device plugin allocated to a pod (Kubernetes; networks with sriov.resourceName)")
	gcEvery := flag.Duration("ipam-gc-interval", 30*time.Second, "how often the IPAM controller frees the blocks of gone nodes and the reservations of gone pods (Kubernetes)")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	if adopted, err := adoptLegacyState(*stateDir, *legacyState); err != nil {
		return err
	} else if adopted {
		log.Info("adopted the state database an earlier agent kept on disk", "from", *legacyState, "to", *stateDir)
	}
	store, err := ipam.Open(filepath.Join(*stateDir, "state.db"))
	if err != nil {
		return err
	}
	defer store.Close()
	kernel, err := kernelpath.New(log.With("path", "kernel"), *hostNetns)
	if err != nil {
		return err
	}
	defer kernel.Close()
	paths := map[api.PathKind]attach.Path{}
	for _, k := range kernelpath.Kinds() {
		paths[k] = kernel
	}
	// SR-IOV VFs of the node's PFs (sysfs and netlink, no vendor tools).
	vfs := sriov.New(log.With("path", "sriov"))
	for _, k := range sriov.Kinds() {
		paths[k] = vfs
	}
	// VPP serves memif and vhostuser networks. The connection loop runs
	// whether or not VPP is installed: only those networks wait for it.
	vpp, err := vppagent.NewManager(vppagent.Config{
		Conn:   vppagent.ConnConfig{APISocket: *vppAPI, StatsSocket: *vppStats},
		RunDir: *runDir,
		Logger: log.With("path", "vpp"),
		// Uplinks that name a PF (avf, dpdk-vf) borrow a VF from the
		// same pool as the sriov paths' pods.
		VFs: vfs,
	})
	if err != nil {
		return err
	}
	// Delegate networks: another CNI plugin makes the interface.
	paths[api.PathDelegate] = delegate.New(delegate.Config{BinDirs: filepath.SplitList(*cniBin), ConfDir: *cniConf,
		CacheDir: filepath.Join(*stateDir, "cni-cache"), HostNetns: *hostNetns, Log: log.With("path", "delegate")})
	vppPath := vppagent.NewPath(vpp)
	for _, k := range vppagent.Kinds() {
		paths[k] = vppPath
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	acfg := agent.Config{Store: store, Networks: netsource.NewDir(*netDir), Paths: paths, Log: log}
	cluster, err := connectCluster(ctx, *kubeconfig, kube.Config{NodeName: *nodeName, GlobalNamespaces: splitList(*globalNS),
		LeaseNamespace: *leaseNS, GCInterval: *gcEvery, Log: log})
	if err != nil {
		return err
	}
	if cluster != nil {
		// Networks are NADs, pods are read from the API, addresses are
		// unique across the cluster.
		store.UseBlocks()
		acfg.Networks, acfg.Pods, acfg.Status, acfg.ClusterIPAM = cluster.Networks(), cluster, cluster, cluster
		// Connects on first use: only networks with sriov.resourceName ask.
		pr, err := podres.New(*podResources)
		if err != nil {
			return err
		}
		defer pr.Close()
		acfg.Devices = pr
	}
	a := agent.New(acfg)
	vppDone := make(chan struct{})
	go func() { defer close(vppDone); vpp.Run(ctx) }() // owned: ends with ctx
	defer func() { stop(); <-vppDone }()
	if *metricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// One scrape: the agent's own metrics, then VPP's counters.
			a.MetricsHandler().ServeHTTP(w, r)
			vpp.MetricsHandler().ServeHTTP(w, r)
		}))
		// /healthz: the process is alive; /readyz: the agent has recovered
		// and answers on its socket (opened only after Recover), and STATUS
		// finds every network's path ready (VPP reachable for VPP networks).
		health := a.HealthHandler(agent.SocketServing(*socket))
		mux.Handle("GET /healthz", health)
		mux.Handle("GET /readyz", health)
		msrv := &http.Server{Addr: *metricsAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { // owned: closed when run returns
			if err := msrv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics endpoint", "addr", *metricsAddr, "err", err)
			}
		}()
		defer msrv.Close()
	}
	if err := a.Recover(ctx); err != nil {
		return err
	}
	if cluster != nil {
		if err := cluster.Audit(ctx, store, 0); err != nil {
			return fmt.Errorf("IPAM audit at start-up: %w", err)
		}
		kubeDone := make(chan struct{})
		go func() { defer close(kubeDone); cluster.Run(ctx, store) }() // owned: ends with ctx
		defer func() { stop(); <-kubeDone }()
		// MultiNetworkPolicy on the node's interfaces, changed on running
		// pods; its first pass re-applies everything after a restart.
		pc, err := cluster.PolicyController(kube.PolicyConfig{
			Targets: func(ctx context.Context) ([]kube.PolicyTarget, error) {
				ifs, err := a.PolicyInterfaces(ctx)
				out := make([]kube.PolicyTarget, len(ifs))
				for i, pi := range ifs {
					out[i] = kube.PolicyTarget(pi)
				}
				return out, err
			},
			Apply: func(ctx context.Context, t kube.PolicyTarget, r policy.Rules) error {
				return a.EnforcePolicy(ctx, agent.PolicyInterface(t), r)
			},
		})
		if err != nil {
			return err
		}
		a.OnAttachmentsChanged(pc.Poke)
		a.UsePolicies(policySource{pc})
		policyDone := make(chan struct{})
		go func() { // owned: ends with ctx
			defer close(policyDone)
			if err := pc.Run(ctx); err != nil {
				log.Error("MultiNetworkPolicy controller stopped: policies are not enforced", "err", err)
			}
		}()
		defer func() { stop(); <-policyDone }()
	}
	// Host links follow network definitions as files are added, changed
	// or removed; the loop is owned here and ends with ctx.
	syncDone := make(chan struct{})
	go func() { defer close(syncDone); a.Run(ctx, *syncEvery) }()
	defer func() { stop(); <-syncDone }()

	l, err := agent.Listen(*socket)
	if err != nil {
		return err
	}
	api := http.NewServeMux()
	api.Handle("/", a.Handler())
	api.Handle("POST "+vppagent.CLIPath, vppagent.CLIHandler(vpp)) // telcnictl vpp ...
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }() // owned: ends when srv is shut down below
	log.Info("telcni agent ready", "socket", *socket, "state", *stateDir, "networks", *netDir)

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing calls in flight")
	sctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	_ = os.Remove(*socket)
	return nil
}
