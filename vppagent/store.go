package vppagent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Store persists Records. The agent's own attachment store implements it
// in production; FileStore serves the standalone agent and the tests.
type Store interface {
	List() ([]Record, error)
	Put(r Record) error
	Delete(key string) error
}

// FileStore keeps one JSON file per record in Dir, written atomically
// (temp file + rename), so a crash leaves either the old or the new record.
type FileStore struct{ Dir string }

func (s FileStore) file(key string) string {
	return filepath.Join(s.Dir, strings.ReplaceAll(key, "/", "_")+".json")
}

// List returns every record, sorted by key.
func (s FileStore) List() ([]Record, error) {
	ents, err := os.ReadDir(s.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list records in %s: %w", s.Dir, err)
	}
	var out []Record
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.Dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read record: %w", err)
		}
		var r Record
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("decode record %s: %w", e.Name(), err)
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Spec.Key() < out[j].Spec.Key() })
	return out, nil
}

// Put writes r.
func (s FileStore) Put(r Record) error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("create record dir: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode record: %w", err)
	}
	f := s.file(r.Spec.Key())
	tmp := f + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write record: %w", err)
	}
	if err := os.Rename(tmp, f); err != nil {
		return fmt.Errorf("commit record: %w", err)
	}
	return nil
}

// Delete removes the record with key; a missing record is not an error.
func (s FileStore) Delete(key string) error {
	if err := os.Remove(s.file(key)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete record %s: %w", key, err)
	}
	return nil
}
