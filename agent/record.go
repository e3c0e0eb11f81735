package agent

import (
	"sync"
	"time"

	"github.com/telcni/telcni/ipam"

	"github.com/telcni/telcni/attach"
)

// Attachment states. An attachment is written "pending", with its
// addresses, in the same transaction as the allocation, before any link
// exists; it becomes "ready" when every interface is attached.
const (
	StatePending = "pending"
	StateReady   = "ready"
)

// Modes of a CNI call.
const (
	ModePod        = "pod"        // one ADD makes every interface the pod's annotation asks for
	ModeAttachment = "attachment" // one ADD makes one interface on one network
)

// Attachment is the record of one CNI attachment (container id + CNI
// ifname), holding every interface it made.
type Attachment struct {
	Key         string          `json:"key"`
	ContainerID string          `json:"containerID"`
	IfName      string          `json:"ifName"` // CNI_IFNAME
	Netns       string          `json:"netns"`
	ConfigName  string          `json:"configName"`
	CNIVersion  string          `json:"cniVersion"`
	Mode        string          `json:"mode"`
	Pod         attach.Pod      `json:"pod"`
	State       string          `json:"state"`
	Created     time.Time       `json:"created"`
	Interfaces  []attach.Record `json:"interfaces"`
}

func recordKey(containerID, ifName string) string { return containerID + "/" + ifName }

// eachRecord decodes every attachment record of tx in turn.
func eachRecord(tx *ipam.Tx, fn func(*Attachment)) error {
	for _, key := range tx.RecordKeys() {
		var rec Attachment
		if err := tx.GetRecord(key, &rec); err != nil {
			return err
		}
		fn(&rec)
	}
	return nil
}

// forEachRecord runs fn on every attachment record, in one read transaction.
func (a *Agent) forEachRecord(fn func(*Attachment)) error {
	return a.store.View(func(tx *ipam.Tx) error { return eachRecord(tx, fn) })
}

// keyedMutex serialises calls for one attachment (an ADD racing its own
// DEL) while letting different pods proceed in parallel.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*refMutex
}

type refMutex struct {
	sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*refMutex{}
	}
	m := k.locks[key]
	if m == nil {
		m = &refMutex{}
		k.locks[key] = m
	}
	m.refs++
	k.mu.Unlock()
	m.Lock()
	return func() {
		m.Unlock()
		k.mu.Lock()
		m.refs--
		if m.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
