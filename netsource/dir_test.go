package netsource

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/telcni/telcni/api"
)

func TestExampleNetworksLoad(t *testing.T) {
	d := NewDir("../deploy/examples")
	all, err := d.Networks(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 {
		t.Fatalf("got %d example networks, want 3", len(all))
	}
	n, err := d.Network(context.Background(), "anything", "fronthaul")
	if err != nil || n.Master != "tcdemo0" {
		t.Fatalf("fronthaul: %v %+v", err, n)
	}
}

func TestNamespacedBeforeClusterWideAndReload(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.json", `{"name":"up","path":"macvlan","master":"eth1"}`)
	write("b.yaml", "name: up\nnamespace: core\npath: macvlan\nmaster: eth2\n")
	write("notes.txt", "not a network")
	d := NewDir(dir)
	ctx := context.Background()
	if n, _ := d.Network(ctx, "core", "up"); n == nil || n.Master != "eth2" {
		t.Errorf("core/up = %+v", n)
	}
	if n, _ := d.Network(ctx, "ran", "up"); n == nil || n.Master != "eth1" {
		t.Errorf("ran sees %+v, want the cluster-wide one", n)
	}
	if _, err := d.Network(ctx, "ran", "absent"); !errors.Is(err, api.ErrNetworkNotFound) {
		t.Errorf("absent: %v", err)
	}
	// An edit is picked up without a restart; a broken file names itself.
	time.Sleep(10 * time.Millisecond)
	write("c.json", `{"name":"x","path":"macvlan"}`)
	_, err := d.Networks(ctx)
	if err == nil || !strings.Contains(err.Error(), "c.json") || !strings.Contains(err.Error(), "master: is required") {
		t.Errorf("broken file: %v", err)
	}
	write("c.json", `{"name":"up","path":"macvlan","master":"eth3"}`)
	if _, err := d.Networks(ctx); err == nil || !strings.Contains(err.Error(), "already defined") {
		t.Errorf("duplicate: %v", err)
	}
}
