package shim

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"

	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/cci-shim/cci-shim/sandbox"
)

func (s *service) Start(ctx context.Context, r *taskv3.StartRequest) (*taskv3.StartResponse, error) {
	c, t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	if r.ExecID == "" {
		// R6: runc execs the entrypoint after Start has returned, so an
		// image built for another architecture would only show "exec
		// format error" on the container's stderr. Check the entrypoint's
		// ELF header first while the rootfs is on the host (runc); inside a
		// VM the rootfs is not, and the check passes.
		if err := sandbox.CheckArch(filepath.Join(c.bundle, "rootfs"), c.spec, c.name, runtime.GOARCH); err != nil {
			return nil, err
		}
	}
	resp, err := t.Start(ctx, r)
	if err != nil {
		return nil, err
	}
	if r.ExecID == "" {
		c.pid.Store(resp.Pid)
		s.startPodMetricsRelay(ctx, c, t) // R27, shim/podmetrics.go
	}
	return resp, nil
}

// Exec interposes nothing (an exec's output goes to its caller, not to the
// container's log stream, so it is not throttled) but records the exec's
// stdio, adds the GPU environment, and forwards it.
func (s *service) Exec(ctx context.Context, r *taskv3.ExecProcessRequest) (*emptypb.Empty, error) {
	c, t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	procSpec := r.Spec
	if c.gpu {
		if procSpec, err = injectExecEnv(r.Spec); err != nil {
			return nil, err
		}
	}
	pio, err := newProcessIO(s.ctx, s.ioDir(r.ID), "exec-"+r.ExecID,
		stdio{stdin: r.Stdin, stdout: r.Stdout, stderr: r.Stderr}, nil)
	if err != nil {
		return nil, err
	}
	if !c.addProc(r.ExecID, pio) {
		pio.close()
		return nil, fmt.Errorf("exec %q in container %q: %w", r.ExecID, r.ID, errdefs.ErrAlreadyExists)
	}
	if _, err := t.Exec(ctx, &taskv3.ExecProcessRequest{
		ID:       r.ID,
		ExecID:   r.ExecID,
		Terminal: r.Terminal,
		Stdin:    pio.backend.stdin,
		Stdout:   pio.backend.stdout,
		Stderr:   pio.backend.stderr,
		Spec:     procSpec,
	}); err != nil {
		for _, p := range c.removeProcs(r.ExecID) {
			p.close()
		}
		return nil, err
	}
	return &emptypb.Empty{}, nil
}
