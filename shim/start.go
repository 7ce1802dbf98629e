package shim

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"

	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/cci-shim/cci-shim/gpu"
	"github.com/cci-shim/cci-shim/sandbox"
)

// admitExec decodes an exec process strictly, checks it against the
// container's spec and re-encodes what was checked.
func (s *service) admitExec(c *container, spec *anypb.Any) (*anypb.Any, error) {
	if spec == nil {
		return nil, fmt.Errorf("exec in container %q: no process spec: %w", c.id, errdefs.ErrInvalidArgument)
	}
	p, err := sandbox.DecodeProcess(spec.GetValue())
	if err != nil {
		return nil, err
	}
	if err := sandbox.CheckExec(c.name, c.spec, p, s.policyConfig()); err != nil {
		return nil, err
	}
	if c.gpu {
		gpu.InjectEnv(p)
	}
	data, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	return &anypb.Any{TypeUrl: spec.GetTypeUrl(), Value: data}, nil
}

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
		s.releasePins(ctx, r.ID)
		s.startPodMetricsRelay(ctx, c, t) // R27, shim/podmetrics.go
		s.statsChanged()
	}
	return resp, nil
}

// releasePins detaches a started container's pinned bind sources
// (pinSources). The backend has mounted them into the container by then
// (runc in its create, runsc's gofer and Kata's shared directory when the
// container is created or started), and the container's mounts are its
// own: they keep what was checked. Left in place, each pin would stay in
// the host's mount table for the container's life, and every runc,
// containerd and shim action that reads /proc/self/mountinfo pays for
// every pin of every pod on the node. A failure is logged: the container
// runs, and its Delete releases the pins again.
func (s *service) releasePins(ctx context.Context, id string) {
	dir := s.containerPinDir(id)
	err := s.owner.release(ctx, func(r resource) bool { return r.Kind == resMounts && r.Container == id && r.Path == dir })
	if err != nil {
		log.G(ctx).WithError(err).WithField(fieldID, id).Warn("releasing the started container's pinned bind sources")
	}
}

// Exec checks the exec process against its container (R24: nothing it asks
// for may go beyond what the container has), adds the GPU environment, and
// forwards it. Its stdio is not interposed: an exec's output goes to its
// caller, not to the container's log stream, so it is not throttled.
func (s *service) Exec(ctx context.Context, r *taskv3.ExecProcessRequest) (*emptypb.Empty, error) {
	c, t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	procSpec, err := s.admitExec(c, r.Spec)
	if err != nil {
		return nil, err
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
