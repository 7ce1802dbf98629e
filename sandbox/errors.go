package sandbox

import (
	"fmt"

	"github.com/containerd/errdefs"
)

// PolicyError is a tenant-facing refusal: it names the offending field, the
// value found and what the platform allows. It unwraps to
// errdefs.ErrInvalidArgument (Kind nil) or to Kind, so the shim maps it to a
// gRPC code with errgrpc.ToGRPC.
type PolicyError struct {
	Container string // container (or sandbox) name; may be empty
	Field     string // OCI or annotation field, e.g. "linux.sysctl"
	Value     string // offending value
	Allowed   string // what is allowed instead
	Reason    string // optional extra detail
	Kind      error  // errdefs sentinel; nil means errdefs.ErrInvalidArgument
}

func (e *PolicyError) Error() string {
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

func (e *PolicyError) Unwrap() error {
	if e.Kind != nil {
		return e.Kind
	}
	return errdefs.ErrInvalidArgument
}
