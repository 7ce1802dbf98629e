package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/cci-shim/cci-shim/config"
	"github.com/cci-shim/cci-shim/gpu"
)

// gpus gives a pod its GPUs (R11-R13): the node ledger's allocation, the
// backend's passthrough description and the driver libraries.
type gpus struct {
	cfg    gpu.Config
	kind   string // the backend's kind: VFIO for Kata, device nodes for runc
	inv    gpu.Inventory
	ledger *gpu.Ledger
}

func newGPUs(cfg config.Config) (*gpus, error) {
	inv, err := gpu.Open(cfg.GPU)
	if err != nil {
		return nil, err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "gpu")
	return &gpus{cfg: cfg.GPU, kind: cfg.Backend.Kind, inv: inv, ledger: gpu.NewLedger(cfg.GPU, logger)}, nil
}

// ledgerKey names a pod in the node's GPU ledger. Container and sandbox ids
// are unique only within a containerd namespace, so the namespace is part
// of the key.
func ledgerKey(namespace, podID string) string { return namespace + "/" + podID }

// apply allocates the GPUs a container's spec asks for to the pod (once per
// pod: the ledger is idempotent per pod) and rewrites the spec. It reports
// whether the container got GPUs, so that its execs get the environment too.
func (g *gpus) apply(ctx context.Context, spec *specs.Spec, podKey string) (bool, error) {
	got, err := g.applyRequest(ctx, spec, podKey)
	return got, gpuErrorKind(err)
}

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

func (g *gpus) applyRequest(ctx context.Context, spec *specs.Spec, podKey string) (bool, error) {
	req, err := gpu.ParseRequest(spec)
	if err != nil || req == nil {
		return false, err
	}
	devices, err := g.inv.Devices()
	if err != nil {
		return false, fmt.Errorf("reading gpu inventory: %w", err)
	}
	hostDriver, err := g.inv.DriverVersion()
	if err != nil {
		return false, fmt.Errorf("reading gpu driver version: %w", err)
	}
	drv, err := g.cfg.Driver(req.DriverVersion, hostDriver)
	if err != nil {
		return false, err
	}
	alloc, err := g.ledger.Allocate(podKey, *req, devices)
	if err != nil {
		return false, err
	}
	if g.kind == config.BackendKata {
		err = gpu.ApplyKata(spec, alloc, drv, g.cfg.Root)
	} else {
		err = gpu.ApplyRunc(spec, alloc, drv, g.cfg.Root)
	}
	if err != nil {
		return false, fmt.Errorf("%w: %w", err, errdefs.ErrFailedPrecondition)
	}
	var uuids []string
	for _, d := range alloc {
		uuids = append(uuids, d.UUID)
	}
	log.G(ctx).WithField("gpus", uuids).WithField("driver", drv.Version).Info("gpus assigned")
	return true, nil
}

// release gives the pod's GPUs back to the node.
func (g *gpus) release(ctx context.Context, podKey string) {
	if err := g.ledger.Release(podKey); err != nil {
		log.G(ctx).WithError(err).Warn("releasing gpus")
	}
}

// injectExecEnv appends the driver library and tool dirs to an exec
// process's LD_LIBRARY_PATH and PATH (R12 beyond: no export after exec).
func injectExecEnv(procSpec *anypb.Any) (*anypb.Any, error) {
	if procSpec == nil {
		return nil, nil
	}
	var p specs.Process
	if err := json.Unmarshal(procSpec.GetValue(), &p); err != nil {
		return nil, fmt.Errorf("exec process spec: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	gpu.InjectEnv(&p)
	data, err := json.Marshal(&p)
	if err != nil {
		return nil, err
	}
	return &anypb.Any{TypeUrl: procSpec.GetTypeUrl(), Value: data}, nil
}
