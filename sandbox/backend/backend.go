// Package backend holds the adapters for the sandbox runtimes the cci shim
// fronts: Kata Containers in production, gVisor (runsc) on every machine,
// containerd's runc shim in development.
//
// Everything that differs between the two lives here: which shim binary to
// start, which runtime options it expects on Create, and (for Kata) which
// annotations size and configure the micro-VM. It is not the place for
// platform policy (package sandbox) and it does not speak ttrpc (package shim
// does); an adapter only describes and rewrites.
package backend

import (
	"errors"
	"fmt"
	"os/exec"

	"github.com/cci-shim/cci-shim/config"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"
)

// Adapter describes one sandbox runtime.
type Adapter interface {
	// Kind is config.BackendRunc, config.BackendGVisor or config.BackendKata.
	Kind() string
	// Binary is the resolved path of the backend shim binary.
	Binary() string
	// Options are the runtime options handed to the backend shim on start
	// and Create, replacing whatever containerd sent for the cci runtime.
	Options() (*anypb.Any, error)
	// AdjustSpec makes backend-specific changes to a container's spec after
	// the platform policy has run.
	AdjustSpec(spec *specs.Spec, size PodSize) error
	// Traits are the backend-specific facts the shim acts on.
	Traits() Traits
}

// PodSize is the normalised size of the pod that the sandbox must provide.
// Zero values mean "not decided": the backend keeps its defaults.
type PodSize struct {
	MilliCPU    int64
	MemoryBytes int64
}

// ErrBinaryNotFound is returned by New when the configured backend binary is
// missing. R2: a configured backend that is missing is an error, never a
// fallback to another runtime.
var ErrBinaryNotFound = errors.New("backend shim binary not found")

// New returns the adapter the node configuration selects, after checking
// that its binary exists.
func New(cfg config.Config) (Adapter, error) {
	path, err := exec.LookPath(cfg.Backend.Binary)
	if err != nil {
		return nil, fmt.Errorf("%w: backend.kind = %q needs %q (%v); install it or set backend.binary in the node config",
			ErrBinaryNotFound, cfg.Backend.Kind, cfg.Backend.Binary, err)
	}
	switch cfg.Backend.Kind {
	case config.BackendRunc:
		return &runc{binary: path, root: cfg.Backend.RuncRoot}, nil
	case config.BackendKata:
		return &kata{binary: path, configPath: cfg.Backend.ConfigPath}, nil
	case config.BackendGVisor:
		return newGVisor(cfg, path)
	default:
		return nil, fmt.Errorf("backend.kind %q: allowed values are %q, %q and %q", cfg.Backend.Kind, config.BackendRunc, config.BackendGVisor, config.BackendKata)
	}
}

func marshalOptions(v any) (*anypb.Any, error) {
	a, err := typeurl.MarshalAnyToProto(v)
	if err != nil {
		return nil, fmt.Errorf("marshaling runtime options: %w", err)
	}
	return a, nil
}
