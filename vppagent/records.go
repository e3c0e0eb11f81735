package vppagent

import (
	"sort"
	"sync"
)

// records is the Manager's view of the pod interfaces it serves. It is not
// a store: the agent's attachment records are the one truth, handed over by
// Retain at start-up and kept current by Add and Del. After an agent restart
// it is empty until Retain has run, and until then reconcile removes nothing.
type records struct {
	mu sync.RWMutex
	m  map[string]Record
}

func (rs *records) list() []Record {
	rs.mu.RLock()
	defer rs.mu.RUnlock()
	out := make([]Record, 0, len(rs.m))
	for _, r := range rs.m {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Spec.Key() < out[j].Spec.Key() })
	return out
}

func (rs *records) get(key string) (Record, bool) {
	rs.mu.RLock()
	defer rs.mu.RUnlock()
	r, ok := rs.m[key]
	return r, ok
}

func (rs *records) put(r Record) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.m == nil {
		rs.m = map[string]Record{}
	}
	rs.m[r.Spec.Key()] = r
}

func (rs *records) delete(key string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	delete(rs.m, key)
}

// replace makes the set exactly recs.
func (rs *records) replace(recs []Record) {
	m := make(map[string]Record, len(recs))
	for _, r := range recs {
		m[r.Spec.Key()] = r
	}
	rs.mu.Lock()
	rs.m = m
	rs.mu.Unlock()
}
