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
	"syscall"
	"time"

	"github.com/telcni/telcni/agent"
	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/cni"
	"github.com/telcni/telcni/ipam"
	"github.com/telcni/telcni/kernelpath"
	"github.com/telcni/telcni/netsource"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "telcni-agent:", err)
		os.Exit(1)
	}
}

func run() error {
	socket := flag.String("socket", cni.DefaultSocket, "unix socket the plugin calls")
	stateDir := flag.String("state-dir", "/var/lib/telcni", "directory of the agent's database")
	netDir := flag.String("networks-dir", "/etc/telcni/networks", "directory of network definitions (JSON or YAML)")
	hostNetns := flag.String("host-netns", "", "netns holding the networks' master devices (default: the agent's own)")
	logLevel := flag.String("log-level", "info", "debug, info, warn or error")
	syncEvery := flag.Duration("sync-interval", 10*time.Second, "how often host VLAN/VXLAN links are reconciled with network definitions")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

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
	a := agent.New(agent.Config{Store: store, Networks: netsource.NewDir(*netDir), Paths: paths, Log: log})

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := a.Recover(ctx); err != nil {
		return err
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
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second}
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
