// Package agenttest assembles a real telcni agent for tests: a bbolt store
// in a temporary directory, network definitions written to files, and the
// agent served on a unix socket, all torn down when the test ends.
package agenttest

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/telcni/telcni/agent"
	"github.com/telcni/telcni/ipam"
)

// Log is a logger that only reports errors, to keep test output readable.
func Log() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

// Store opens a fresh state store, closed when the test ends.
func Store(t testing.TB) *ipam.Store {
	t.Helper()
	s, err := ipam.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// NetworkDir writes network definitions (file name -> content) into a new
// directory and returns it.
func NetworkDir(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Serve serves a on a new unix socket, returned, until the test ends. Its
// cleanup runs before those registered earlier (the store, the paths), so
// no call is in flight when they close.
func Serve(t testing.TB, a *agent.Agent) string {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "agent.sock")
	l, err := agent.Listen(socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: a.Handler()}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }() // owned: ends at Shutdown below
	t.Cleanup(func() {
		_ = srv.Shutdown(context.Background())
		<-done
	})
	return socket
}
