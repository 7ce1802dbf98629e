// Package refusal is the tenant-facing refusal every policy check of the
// cci shim returns: the offending field, the value found and what the
// platform allows. It is its own package so that the pod policy (package
// sandbox) and the backend adapters (sandbox/backend), which the policy
// asks about the backend, refuse alike without importing each other.
package refusal

import (
	"fmt"

	"github.com/containerd/errdefs"
)

// Error is a tenant-facing refusal. It unwraps to errdefs.ErrInvalidArgument
// (Kind nil) or to Kind, so the shim maps it to a gRPC code with
// errgrpc.ToGRPC.
type Error struct {
	Container string // container (or sandbox) name; may be empty
	Field     string // OCI or annotation field, e.g. "linux.sysctl"
	Value     string // offending value
	Allowed   string // what is allowed instead
	Reason    string // optional extra detail
	Kind      error  // errdefs sentinel; nil means errdefs.ErrInvalidArgument
}

func (e *Error) Error() string {
	s := ""
	if e.Container != "" {
		s = fmt.Sprintf("container %q: ", e.Container)
	}
	s += fmt.Sprintf("%s %q is not allowed", e.Field, e.Value)
	if e.Reason != "" {
		s += " (" + e.Reason + ")"
	}
	if e.Allowed != "" {
		s += "; allowed: " + e.Allowed
	}
	return s
}

func (e *Error) Unwrap() error {
	if e.Kind != nil {
		return e.Kind
	}
	return errdefs.ErrInvalidArgument
}
