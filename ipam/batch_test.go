package ipam

import (
	"errors"
	"fmt"
	"sync"
	"testing"
)

// Concurrent Batch calls all land; a failing one gets its own error and
// takes nothing of the others down with it.
func TestBatchGroupCommit(t *testing.T) {
	s := openStore(t)
	errBad := errors.New("bad member")
	const n = 64
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Batch(func(tx *Tx) error {
				if i == 17 {
					_ = tx.PutRecord("half-done", i) // rolled back with its failure
					return errBad
				}
				return tx.PutRecord(fmt.Sprintf("k%02d", i), i)
			})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if i == 17 && !errors.Is(err, errBad) {
			t.Errorf("the failing member got %v, want its own error", err)
		}
		if i != 17 && err != nil {
			t.Errorf("member %d: %v", i, err)
		}
	}
	var keys []string
	_ = s.View(func(tx *Tx) error { keys = tx.RecordKeys(); return nil })
	if len(keys) != n-1 {
		t.Errorf("%d records, want %d (all but the failed one, and nothing of it)", len(keys), n-1)
	}
	for _, k := range keys {
		if k == "half-done" {
			t.Error("the failed member's write was committed")
		}
	}
}
