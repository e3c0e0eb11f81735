package api

import (
	"fmt"
	"strings"
)

// FieldError is one problem with one field of an input document.
type FieldError struct {
	Field string // JSON path, e.g. "networks[1].ips[0]" or "ipam.subnets[0].cidr"
	Value any    // offending value; nil when the field is missing
	Msg   string // what is wrong, e.g. "is not an IP prefix"
}

func (e FieldError) Error() string {
	if e.Value == nil {
		return fmt.Sprintf("%s: %s", e.Field, e.Msg)
	}
	if s, ok := e.Value.(string); ok {
		return fmt.Sprintf("%s: %q %s", e.Field, s, e.Msg)
	}
	return fmt.Sprintf("%s: %v %s", e.Field, e.Value, e.Msg)
}

// ValidationError carries every FieldError found in one document.
type ValidationError struct {
	Errors []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		parts[i] = fe.Error()
	}
	return strings.Join(parts, "; ")
}

// fieldErrors accumulates FieldErrors under a path prefix.
type fieldErrors struct {
	errs []FieldError
}

func (f *fieldErrors) add(field string, value any, format string, args ...any) {
	f.errs = append(f.errs, FieldError{Field: field, Value: value, Msg: fmt.Sprintf(format, args...)})
}

// err returns nil when nothing was added, so callers can return it directly.
func (f *fieldErrors) err() error {
	if len(f.errs) == 0 {
		return nil
	}
	return &ValidationError{Errors: f.errs}
}

func join(prefix, field string) string {
	if prefix == "" {
		return field
	}
	return prefix + "." + field
}
