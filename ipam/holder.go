package ipam

import (
	"errors"
	"fmt"
)

// Holder is who holds an address: one interface of one container.
type Holder struct {
	ContainerID  string `json:"containerID"`
	IfName       string `json:"ifName"`
	PodNamespace string `json:"podNamespace,omitempty"`
	PodName      string `json:"podName,omitempty"`
	Static       bool   `json:"static,omitempty"`
}

func (h Holder) String() string {
	pod := "no pod"
	if h.PodName != "" {
		pod = h.PodNamespace + "/" + h.PodName
	}
	return fmt.Sprintf("%s (container %s, interface %s)", pod, shortID(h.ContainerID), h.IfName)
}

func (h Holder) key() []byte { return []byte(h.ContainerID + "\x00" + h.IfName) }

func (h Holder) same(o Holder) bool { return h.ContainerID == o.ContainerID && h.IfName == o.IfName }

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// ErrAddressInUse is wrapped by the error for a static request whose
// address another holder has.
var ErrAddressInUse = errors.New("address in use")

// ErrExhausted is wrapped by the error for a dynamic request that finds no
// free address.
var ErrExhausted = errors.New("no free address")

// ErrInvalidRequest is wrapped by the error for a static request that the
// network cannot honour (outside every subnet, the gateway, excluded...).
var ErrInvalidRequest = errors.New("invalid address request")

// ConflictError names the holder of a requested address.
type ConflictError struct {
	Network string
	Address string
	Holder  Holder
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("network %s: address %s is already held by %s", e.Network, e.Address, e.Holder)
}

func (e *ConflictError) Unwrap() error { return ErrAddressInUse }
