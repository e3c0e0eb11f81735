package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/telcni/telcni/ipam"
)

// An upgraded agent whose state dir moved to a tmpfs adopts the database
// the older one kept on disk, records and allocations included, once; a
// state dir that has a database keeps it; a database another agent holds
// is refused.
func TestAdoptLegacyState(t *testing.T) {
	legacy, dir := t.TempDir(), filepath.Join(t.TempDir(), "state")
	old, err := ipam.Open(filepath.Join(legacy, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Update(func(tx *ipam.Tx) error { return tx.PutRecord("cid-1/eth0", map[string]string{"pod": "ran/du-1"}) }); err != nil {
		t.Fatal(err)
	}
	if _, err := adoptLegacyState(dir, legacy); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("a database an agent holds open: %v, want refused as in use", err)
	}
	old.Close()

	adopted, err := adoptLegacyState(dir, legacy)
	if err != nil || !adopted {
		t.Fatalf("adopt: %v %v", adopted, err)
	}
	s, err := ipam.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	if err := s.View(func(tx *ipam.Tx) error { return tx.GetRecord("cid-1/eth0", &got) }); err != nil || got["pod"] != "ran/du-1" {
		t.Fatalf("adopted record %v %v", got, err)
	}
	s.Close()
	if _, err := os.Stat(filepath.Join(legacy, "state.db")); !os.IsNotExist(err) {
		t.Errorf("the earlier database is still in place (it would be adopted again): %v", err)
	}
	if again, err := adoptLegacyState(dir, legacy); again || err != nil {
		t.Errorf("second start: adopted %v %v, want nothing", again, err)
	}
}
