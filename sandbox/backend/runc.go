package backend

import (
	"github.com/cci-shim/cci-shim/config"
	"github.com/containerd/containerd/api/types/runc/options"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"
)

// runc is containerd's runc shim: the development and CI backend. Containers
// share the host kernel, so it is never used for tenants in production.
type runc struct {
	binary string
	root   string // runc --root, kept under the cci state dir
}

func (r *runc) Kind() string   { return config.BackendRunc }
func (r *runc) Binary() string { return r.binary }

// Options hands runc shim its own options type: it type-asserts whatever it
// receives to runc options, so the cci runtime's options must never reach it.
func (r *runc) Options() (*anypb.Any, error) {
	return marshalOptions(&options.Options{Root: r.root})
}

// AdjustSpec has nothing runc-specific to do: the pod's limits are already in
// each container's linux.resources.
func (r *runc) AdjustSpec(*specs.Spec, PodSize) error { return nil }

// Traits: runc shares the host kernel; each container's own processes do its
// rootfs I/O; GPUs are the host's device nodes; the shim serves the pod's
// metrics from inside the pod's network namespace; containerd's runc task
// service runs inside the cci shim.
func (r *runc) Traits() Traits {
	return Traits{Isolation: IsolationNone, RootfsThrottle: ThrottleContainer, GPU: GPUDeviceNodes, PodMetrics: MetricsHostNetns, InProcess: true}
}
