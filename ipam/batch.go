package ipam

import (
	"errors"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// groupCommit folds concurrent Batch calls into shared transactions
// without ever waiting for company: a call that finds no commit running
// commits at once (bbolt's own Batch waits MaxBatchDelay, 10 ms, for others
// to join, twice per ADD); calls that arrive while a commit is running join
// the next one, which the running committer starts as soon as it is done.
// A burst thus costs one fsync per round, and a lone ADD none of the wait.
type groupCommit struct {
	mu      sync.Mutex
	pending []*batchCall
	running bool
}

type batchCall struct {
	fn   func(*bolt.Tx) error
	err  error
	done chan struct{}
}

// errBatchMember marks the member whose failure rolled the shared
// transaction back.
type errBatchMember struct {
	i   int
	err error
}

func (e *errBatchMember) Error() string { return e.err.Error() }

func (g *groupCommit) do(db *bolt.DB, fn func(*bolt.Tx) error) error {
	c := &batchCall{fn: fn, done: make(chan struct{})}
	g.mu.Lock()
	g.pending = append(g.pending, c)
	if g.running {
		g.mu.Unlock()
		<-c.done
		return c.err
	}
	g.running = true
	for {
		batch := g.pending
		g.pending = nil
		g.mu.Unlock()
		commit(db, batch)
		g.mu.Lock()
		if len(g.pending) == 0 {
			g.running = false
			g.mu.Unlock()
			break
		}
	}
	<-c.done
	return c.err
}

// commit runs batch in one transaction. A member that fails is taken out
// and run alone, so that its error is its own, and the rest run again:
// members must be idempotent (as with bbolt's Batch).
func commit(db *bolt.DB, batch []*batchCall) {
	for len(batch) > 0 {
		err := db.Update(func(tx *bolt.Tx) error {
			for i, c := range batch {
				if err := c.fn(tx); err != nil {
					return &errBatchMember{i: i, err: err}
				}
			}
			return nil
		})
		var m *errBatchMember
		if errors.As(err, &m) {
			failed := batch[m.i]
			batch = append(batch[:m.i:m.i], batch[m.i+1:]...)
			failed.err = db.Update(failed.fn)
			close(failed.done)
			continue
		}
		for _, c := range batch {
			c.err = err // nil, or the commit's own failure for all
			close(c.done)
		}
		return
	}
}
