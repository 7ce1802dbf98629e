package shim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cci-shim/cci-shim/config"
	"github.com/cci-shim/cci-shim/gpu"
	"github.com/cci-shim/cci-shim/sandbox/backend"
)

// gpus gives a pod its GPUs (R11-R13): the node ledger's allocation, the
// backend's passthrough description and the driver libraries.
type gpus struct {
	cfg    gpu.Config
	mode   backend.GPUMode // how the backend hands GPUs to the pod
	inv    gpu.Inventory
	ledger *gpu.Ledger
}

func newGPUs(cfg config.Config, mode backend.GPUMode) (*gpus, error) {
	inv, err := gpu.Open(cfg.GPU)
	if err != nil {
		return nil, err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "gpu")
	return &gpus{cfg: cfg.GPU, mode: mode, inv: inv, ledger: gpu.NewLedger(cfg.GPU, logger)}, nil
}

// assignGPUs gives the container the GPUs its spec asks for, from the pod's
// allocation in the node ledger (made once per pod and released with it),
// and reports whether it got any, so that its execs get the environment too.
func (s *service) assignGPUs(ctx context.Context, spec *specs.Spec) (bool, error) {
	req, err := gpu.ParseRequest(spec)
	if err != nil || req == nil {
		return false, gpuErrorKind(err)
	}
	if !s.owner.has(resGPU, "") {
		release := func(ctx context.Context) error { return s.gpus.ledger.Release(s.gpuKey) }
		if err := s.owner.add(resource{Kind: resGPU, Key: s.gpuKey}, release); err != nil {
			return false, err
		}
	}
	return true, gpuErrorKind(s.gpus.apply(ctx, spec, req, s.gpuKey))
}

// ledgerKey names a pod in the node's GPU ledger. Container and sandbox ids
// are unique only within a containerd namespace, so the namespace is part
// of the key.
func ledgerKey(namespace, podID string) string { return namespace + "/" + podID }

// gpuErrorKind gives the gpu package's errors their errdefs category, so
// containerd and CRI report the right gRPC code.
func gpuErrorKind(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gpu.ErrInvalidRequest):
		return fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	case errors.Is(err, gpu.ErrUnavailable):
		return fmt.Errorf("%w: %w", err, errdefs.ErrResourceExhausted)
	}
	return err
}

// apply allocates the GPUs req asks for to the pod (the ledger is
// idempotent per pod) and rewrites the spec for the backend's GPU mode.
func (g *gpus) apply(ctx context.Context, spec *specs.Spec, req *gpu.Request, podKey string) error {
	devices, err := g.inv.Devices()
	if err != nil {
		return fmt.Errorf("reading gpu inventory: %w", err)
	}
	hostDriver, err := g.inv.DriverVersion()
	if err != nil {
		return fmt.Errorf("reading gpu driver version: %w", err)
	}
	drv, err := g.cfg.Driver(req.DriverVersion, hostDriver)
	if err != nil {
		return err
	}
	alloc, err := g.ledger.Allocate(podKey, *req, devices)
	if err != nil {
		return err
	}
	switch g.mode {
	case backend.GPUVFIO:
		err = gpu.ApplyKata(spec, alloc, drv, g.cfg.Root)
	case backend.GPUDeviceNodes, backend.GPUNVProxy:
		// nvproxy: gVisor forwards the driver's ioctls on the same nodes.
		err = gpu.ApplyRunc(spec, alloc, drv, g.cfg.Root)
	default:
		err = fmt.Errorf("gpus: the backend's GPU mode %q is not supported by this node", g.mode)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", err, errdefs.ErrFailedPrecondition)
	}
	var uuids []string
	for _, d := range alloc {
		uuids = append(uuids, d.UUID)
	}
	log.G(ctx).WithField("gpus", uuids).WithField("driver", drv.Version).Info("gpus assigned")
	return nil
}
