package attach

import (
	"errors"
	"fmt"
)

// CNI error codes telcni returns. 1-11 and 50-51 are the spec's; 100 and
// up are telcni's own (the spec reserves them for plugins).
const (
	CodeIncompatibleVersion uint = 1
	CodeUnsupportedField    uint = 2
	CodeUnknownContainer    uint = 3
	CodeInvalidEnv          uint = 4
	CodeIOFailure           uint = 5
	CodeDecodeFailure       uint = 6
	CodeInvalidConfig       uint = 7
	CodeTryAgainLater       uint = 11
	CodeNotAvailable        uint = 50
	CodeLimitedConnectivity uint = 51

	CodeInternal      uint = 100 // a failure inside telcni or the kernel
	CodeAddressInUse  uint = 101 // a requested static address is held by another pod
	CodePoolExhausted uint = 102 // no free address in the network's range
	CodeCheckFailed   uint = 103 // CHECK found a difference from the record
	CodeNoFreeDevice  uint = 104 // every usable device (SR-IOV VF) of the network is taken
)

// CodedError carries the CNI error code for an error.
type CodedError struct {
	Code uint
	Err  error
}

func (e *CodedError) Error() string { return e.Err.Error() }
func (e *CodedError) Unwrap() error { return e.Err }

// WithCode attaches a CNI code to err (nil stays nil).
func WithCode(code uint, err error) error {
	if err == nil {
		return nil
	}
	return &CodedError{Code: code, Err: err}
}

// Errorf is fmt.Errorf with a CNI code.
func Errorf(code uint, format string, args ...any) error {
	return &CodedError{Code: code, Err: fmt.Errorf(format, args...)}
}

// CodeOf returns the CNI code of err: the outermost CodedError's, or
// CodeInternal.
func CodeOf(err error) uint {
	var ce *CodedError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return CodeInternal
}
