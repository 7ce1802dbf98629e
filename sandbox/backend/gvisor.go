package backend

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"

	"github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/cci-shim/cci-shim/config"
	"github.com/cci-shim/cci-shim/sandbox/refusal"
)

// RunscOptionsType is the TypeUrl gVisor's shim requires beside ConfigPath.
const RunscOptionsType = "io.containerd.runsc.v1.options"

// gvisor runs every pod in one gVisor sandbox: runsc's user-space kernel
// (the sentry) and its file proxy (the gofer), with the pod's containers
// grouped into one sandbox by the CRI annotations. runsc is driven either
// by containerd's runc shim, as its OCI runtime binary (through cci-runsc,
// which adds the node's flags and bridges what runsc does differently from
// runc), or by gVisor's own shim (through a runsc.toml carrying the same
// flags).
type gvisor struct {
	shim    string // config.GVisorShimRunc or config.GVisorShimRunsc
	binary  string // the backend shim, resolved
	runsc   string // runsc, resolved
	helper  string // cci-runsc, resolved (shim "runc" only)
	root    string // runsc --root
	flags   []string
	nvproxy bool
	dir     string // where the wrapper or runsc.toml is written

	versionOnce sync.Once
	version     runscVersion
	versionErr  error
}

func newGVisor(cfg config.Config, binary string) (*gvisor, error) {
	g := cfg.Backend.GVisor
	runsc, err := exec.LookPath(g.Runsc)
	if err != nil {
		return nil, fmt.Errorf("%w: backend.kind = %q needs runsc %q (%v); install it (Debian package runsc) or set backend.gvisor.runsc in the node config",
			ErrBinaryNotFound, cfg.Backend.Kind, g.Runsc, err)
	}
	var helper string
	if g.Shim == config.GVisorShimRunc {
		if helper, err = findHelper(g.Helper); err != nil {
			return nil, fmt.Errorf("%w: backend.kind = %q with the runc shim needs its OCI runtime %q (%v); install it beside containerd-shim-cci-v2 or set backend.gvisor.helper",
				ErrBinaryNotFound, cfg.Backend.Kind, g.Helper, err)
		}
	}
	return &gvisor{
		shim:    g.Shim,
		binary:  binary,
		runsc:   runsc,
		helper:  helper,
		root:    g.Root,
		flags:   RunscFlags(g),
		nvproxy: g.NVProxy,
		dir:     gvisorDir(cfg.StateDir),
	}, nil
}

func (g *gvisor) Kind() string   { return config.BackendGVisor }
func (g *gvisor) Binary() string { return g.binary }

// Options names runsc and the node's flags for the backend shim: for the
// runc shim a script running cci-runsc with runsc and the flags (runc
// options: BinaryName, Root), for gVisor's shim a runsc.toml (ConfigPath
// with TypeUrl RunscOptionsType). Options writes that file under
// <state_dir>/gvisor, named after its content, so that shims with the same
// node config share it and a changed config never rewrites a file in use.
func (g *gvisor) Options() (*anypb.Any, error) {
	switch g.shim {
	case config.GVisorShimRunsc:
		path, err := writeContentAddressed(g.dir, "runsc-", ".toml", runscTOML(g.runsc, g.root, g.flags), 0o644)
		if err != nil {
			return nil, fmt.Errorf("writing runsc.toml: %w", err)
		}
		return marshalOptions(&runtimeoptions.Options{TypeUrl: RunscOptionsType, ConfigPath: path})
	default:
		path, err := writeContentAddressed(g.dir, "runsc-", "", runscWrapper(g.helper, g.runsc, g.flags), 0o755)
		if err != nil {
			return nil, fmt.Errorf("writing runsc wrapper: %w", err)
		}
		return marshalOptions(&options.Options{BinaryName: path, Root: g.root})
	}
}

// AdjustSpec refuses what the sandbox cannot honour, instead of letting
// runsc drop it silently: pod sysctls gVisor does not apply (R9), GPUs
// without nvproxy (R11), and runsc's own annotations, which would let a pod
// change how its sandbox is built.
func (g *gvisor) AdjustSpec(spec *specs.Spec, _ PodSize) error {
	for k := range spec.Annotations {
		if strings.HasPrefix(k, "dev.gvisor.") {
			return &refusal.Error{Field: "annotations", Value: k,
				Reason:  "runsc settings come from the node config, never from a pod",
				Allowed: "no dev.gvisor.* annotation"}
		}
	}
	if spec.Linux == nil {
		return nil
	}
	if len(spec.Linux.Sysctl) > 0 {
		g.versionOnce.Do(func() { g.version, g.versionErr = readRunscVersion(g.runsc) })
		if g.versionErr != nil {
			return fmt.Errorf("checking pod sysctls against runsc: %w", g.versionErr)
		}
		if err := checkGVisorSysctls(spec.Linux.Sysctl, g.version); err != nil {
			return err
		}
	}
	for _, d := range spec.Linux.Devices {
		if strings.HasPrefix(d.Path, "/dev/nvidia") && !g.nvproxy {
			return &refusal.Error{Field: "linux.devices", Value: d.Path,
				Reason:  "GPUs on the gvisor backend go through gVisor's nvproxy, which this node does not enable (backend.gvisor.nvproxy)",
				Allowed: "no GPU on this node's gvisor backend", Kind: errdefs.ErrFailedPrecondition}
		}
	}
	return nil
}

// Traits: a user-space kernel per pod; the sandbox's sentry and gofer do
// every container's rootfs I/O from the sandbox's host cgroup, and each
// write must reach the device in their context (RootfsSyncWrites); GPUs
// through nvproxy; the sandbox's network stack owns the pod's interface.
// Through containerd's runc shim (runsc as its OCI runtime), that shim's
// task service runs inside the cci shim; gVisor's own shim is a process of
// its own.
func (g *gvisor) Traits() Traits {
	return Traits{Isolation: IsolationUserKernel, RootfsThrottle: ThrottleSandbox, GPU: GPUNVProxy,
		PodMetrics: MetricsInSandbox, RootfsSyncWrites: true, InProcess: g.shim == config.GVisorShimRunc}
}
