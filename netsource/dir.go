// Package netsource provides network definitions to the agent when there is
// no Kubernetes: a directory of JSON or YAML files, one network per file.
package netsource

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/telcni/telcni/api"
)

// Dir reads network definitions from a directory. It re-reads the
// directory when a file's name, size or modification time changes, so an
// operator can add or edit a network without restarting the agent.
type Dir struct {
	path string

	mu       sync.Mutex
	stamp    string
	networks []*api.Network
	err      error
}

var _ api.NetworkSource = (*Dir)(nil)

// NewDir returns a source over the directory at path.
func NewDir(path string) *Dir { return &Dir{path: path} }

var extensions = []string{".json", ".yaml", ".yml", ".conf"}

// Networks returns every definition; one invalid file makes the whole load
// fail with the file named, because guessing around it could attach a pod
// to the wrong network.
func (d *Dir) Networks(ctx context.Context) ([]*api.Network, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	files, stamp, err := d.scan()
	if err != nil {
		return nil, err
	}
	if stamp == d.stamp && d.stamp != "" {
		return d.networks, d.err
	}
	d.stamp = stamp
	d.networks, d.err = load(files)
	return d.networks, d.err
}

// Network returns the definition named name for a pod in namespace: the
// one in that namespace, else the cluster-wide one.
func (d *Dir) Network(ctx context.Context, namespace, name string) (*api.Network, error) {
	all, err := d.Networks(ctx)
	if err != nil {
		return nil, err
	}
	var global *api.Network
	for _, n := range all {
		switch {
		case n.Name != name:
		case n.Namespace == namespace:
			return n, nil
		case n.Namespace == "":
			global = n
		}
	}
	if global != nil {
		return global, nil
	}
	return nil, fmt.Errorf("network %q for namespace %q in %s: %w", name, namespace, d.path, api.ErrNetworkNotFound)
}

func (d *Dir) scan() ([]string, string, error) {
	entries, err := os.ReadDir(d.path)
	if err != nil {
		return nil, "", fmt.Errorf("read network dir: %w", err)
	}
	var files []string
	var stamp strings.Builder
	for _, e := range entries {
		if e.IsDir() || !slices.Contains(extensions, filepath.Ext(e.Name())) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return nil, "", fmt.Errorf("stat %s: %w", e.Name(), err)
		}
		files = append(files, filepath.Join(d.path, e.Name()))
		fmt.Fprintf(&stamp, "%s:%d:%d;", e.Name(), info.Size(), info.ModTime().UnixNano())
	}
	return files, stamp.String(), nil
}

func load(files []string) ([]*api.Network, error) {
	var out []*api.Network
	seen := map[string]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return nil, fmt.Errorf("read %s: %w", f, err)
		}
		n, err := api.ParseNetwork(data)
		if err != nil {
			return nil, fmt.Errorf("network file %s: %w", f, err)
		}
		if prev, dup := seen[n.Key()]; dup {
			return nil, fmt.Errorf("network file %s: network %s is already defined in %s", f, n.Key(), prev)
		}
		seen[n.Key()] = f
		out = append(out, n)
	}
	return out, nil
}
