package ipam

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketPools   = []byte("pools")
	bucketRecords = []byte("records")
	subIPs        = []byte("ips")
	subOwners     = []byte("owners")
	subMeta       = []byte("meta")
)

// Store is the node's bbolt database: address pools and attachment records.
type Store struct {
	db *bolt.DB
	// blocks: dynamic addresses only from the node's blocks (cluster mode).
	blocks bool
	group  groupCommit
}

// Open opens (creating if needed) the database at path. A second agent on
// the same state directory fails here instead of corrupting state.
func Open(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open state db %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketPools, bucketRecords} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init state db %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Update runs fn in one read-write transaction: everything fn does is
// committed together, or nothing is when fn returns an error.
func (s *Store) Update(fn func(tx *Tx) error) error {
	return s.db.Update(func(btx *bolt.Tx) error { return fn(&Tx{tx: btx, blocks: s.blocks}) })
}

// Batch is Update for calls that arrive concurrently (a burst of pod
// ADDs): they are folded into one transaction and one fsync, and a lone
// call commits at once (see groupCommit). fn may run more than once (when
// a batch member fails, the rest are retried), so it must be idempotent.
func (s *Store) Batch(fn func(tx *Tx) error) error {
	return s.group.do(s.db, func(btx *bolt.Tx) error { return fn(&Tx{tx: btx, blocks: s.blocks}) })
}

// View runs fn in a read-only transaction.
func (s *Store) View(fn func(tx *Tx) error) error {
	return s.db.View(func(btx *bolt.Tx) error { return fn(&Tx{tx: btx, blocks: s.blocks}) })
}

// Tx is one transaction over pools and records.
type Tx struct {
	tx     *bolt.Tx
	blocks bool
}

// PutRecord stores the JSON form of v under key.
func (t *Tx) PutRecord(key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode record %s: %w", key, err)
	}
	return t.tx.Bucket(bucketRecords).Put([]byte(key), data)
}

// ErrNoRecord is returned by GetRecord for a missing key.
var ErrNoRecord = errors.New("no such record")

// GetRecord decodes the record under key into v.
func (t *Tx) GetRecord(key string, v any) error {
	data := t.tx.Bucket(bucketRecords).Get([]byte(key))
	if data == nil {
		return ErrNoRecord
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode record %s: %w", key, err)
	}
	return nil
}

// DeleteRecord removes the record under key (no error when absent).
func (t *Tx) DeleteRecord(key string) error {
	return t.tx.Bucket(bucketRecords).Delete([]byte(key))
}

// RecordKeys lists every record key.
func (t *Tx) RecordKeys() []string {
	var keys []string
	_ = t.tx.Bucket(bucketRecords).ForEach(func(k, _ []byte) error {
		keys = append(keys, string(k))
		return nil
	})
	return keys
}

// pool returns the buckets of one network's pool, creating them when
// create is set; nil when absent and not created.
func (t *Tx) pool(network string, create bool) (*poolBuckets, error) {
	root := t.tx.Bucket(bucketPools)
	b := root.Bucket([]byte(network))
	if b == nil {
		if !create {
			return nil, nil
		}
		var err error
		if b, err = root.CreateBucket([]byte(network)); err != nil {
			return nil, fmt.Errorf("create pool %s: %w", network, err)
		}
		for _, sub := range [][]byte{subIPs, subOwners, subMeta} {
			if _, err := b.CreateBucket(sub); err != nil {
				return nil, fmt.Errorf("create pool %s: %w", network, err)
			}
		}
	}
	return &poolBuckets{b: b, ips: b.Bucket(subIPs), owners: b.Bucket(subOwners), meta: b.Bucket(subMeta)}, nil
}

type poolBuckets struct {
	b      *bolt.Bucket // the pool itself (blocks, foreign: see blocks.go)
	ips    *bolt.Bucket // addr (16 bytes) -> Holder JSON
	owners *bolt.Bucket // holder key -> []addr JSON
	meta   *bolt.Bucket // "hint4"/"hint6" -> addr
}
