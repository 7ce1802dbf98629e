package shim

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cci-shim/cci-shim/iothrottle"
	"github.com/cci-shim/cci-shim/sandbox"
	"github.com/cci-shim/cci-shim/sandbox/backend"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Create applies the platform's rules to the container's spec, writes it to
// a bundle of the backend's own, interposes stdio and forwards the Create.
// The first Create of the pod starts the backend shim. On any failure
// everything this call set up is undone.
func (s *service) Create(ctx context.Context, r *taskv3.CreateTaskRequest) (_ *taskv3.CreateTaskResponse, retErr error) {
	s.createMu.Lock()
	defer s.createMu.Unlock()
	ctx = log.WithLogger(ctx, log.G(ctx).WithField(fieldID, r.ID))

	s.mu.Lock()
	_, exists := s.containers[r.ID]
	s.mu.Unlock()
	if exists {
		return nil, fmt.Errorf("container %q: %w", r.ID, errdefs.ErrAlreadyExists)
	}

	var undo []func()
	defer func() {
		if retErr != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()

	spec, err := readSpec(filepath.Join(r.Bundle, "config.json"))
	if err != nil {
		return nil, err
	}
	pod, err := sandbox.PodFromSpec(spec)
	if err != nil {
		return nil, err
	}
	if pod.ContainerName == "" && pod.Type == sandbox.TypeStandalone {
		pod.ContainerName = r.ID // ctr: errors and log policies name the container by its id
	}
	plan, err := sandbox.Apply(spec, pod, s.policyConfig())
	if err != nil {
		return nil, err
	}
	limits, err := iothrottle.LimitsFromConfig(s.cfg.Throttle.NodeLimits(), spec.Annotations)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	undoPrepare, err := sandbox.Prepare(plan)
	if err != nil {
		return nil, fmt.Errorf("preparing pod volumes: %w", err)
	}
	undo = append(undo, func() {
		if err := undoPrepare(); err != nil {
			log.G(ctx).WithError(err).Warn("undoing pod volumes")
		}
	})
	if err := s.setupLogs(ctx, spec, pod); err != nil {
		return nil, err
	}
	hasGPU, err := s.gpus.apply(ctx, spec, s.gpuKey)
	if err != nil {
		return nil, err
	}
	if hasGPU {
		s.podHasGPU.Store(true)
	}
	if hasGPU && s.noContainers() {
		undo = append(undo, func() { s.gpus.release(ctx, s.gpuKey) })
	}
	if pod.IsSandbox() && spec.Linux != nil {
		s.sandboxCgroup = spec.Linux.CgroupsPath
	}
	rootfs, throttle, err := s.throttleRootfs(ctx, spec, r.Rootfs, limits.Rootfs)
	if err != nil {
		return nil, err
	}
	undo = append(undo, throttle.close)
	var size backend.PodSize
	if plan.PodSize != nil {
		size = backend.PodSize{MilliCPU: plan.PodSize.Pod.MilliCPU, MemoryBytes: plan.PodSize.Pod.Memory}
	}
	if err := s.adapter.AdjustSpec(spec, size); err != nil {
		return nil, fmt.Errorf("adjusting spec for %s: %w", s.adapter.Kind(), err)
	}

	bundle := s.bundleDir(r.ID)
	if err := os.MkdirAll(filepath.Join(bundle, "rootfs"), 0o711); err != nil {
		return nil, fmt.Errorf("creating backend bundle: %w", err)
	}
	undo = append(undo, func() { removeBundle(ctx, bundle) })
	if err := writeSpec(filepath.Join(bundle, "config.json"), spec); err != nil {
		return nil, err
	}

	ioDir := filepath.Join(s.ioDir(), r.ID)
	if err := os.MkdirAll(ioDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating stdio dir: %w", err)
	}
	undo = append(undo, func() { os.RemoveAll(ioDir) })
	var stdioLimiter *iothrottle.Limiter // nil: pass containerd's FIFOs through
	if limits.StdioBytesPerSec > 0 {
		stdioLimiter = iothrottle.NewLimiter(limits.StdioBytesPerSec)
	}
	pio, err := newProcessIO(s.ctx, ioDir, "init", stdio{stdin: r.Stdin, stdout: r.Stdout, stderr: r.Stderr}, stdioLimiter)
	if err != nil {
		return nil, err
	}
	undo = append(undo, pio.close)

	b, started, err := s.ensureBackend(ctx, r.ID, bundle)
	if err != nil {
		return nil, err
	}
	if started {
		undo = append(undo, func() { s.stopBackend(ctx, r.ID) })
	}

	resp, err := b.task.Create(ctx, &taskv3.CreateTaskRequest{
		ID:               r.ID,
		Bundle:           bundle,
		Rootfs:           rootfs,
		Terminal:         r.Terminal,
		Stdin:            pio.backend.stdin,
		Stdout:           pio.backend.stdout,
		Stderr:           pio.backend.stderr,
		Checkpoint:       r.Checkpoint,
		ParentCheckpoint: r.ParentCheckpoint,
		Options:          s.launch.options,
	})
	if err != nil {
		return nil, fmt.Errorf("backend create: %w", err)
	}
	if err := s.applyHostThrottle(throttle); err != nil {
		b.task.Delete(context.WithoutCancel(ctx), &taskv3.DeleteRequest{ID: r.ID})
		return nil, err
	}

	s.mu.Lock()
	s.containers[r.ID] = &container{
		id:          r.ID,
		bundle:      bundle,
		frontBundle: r.Bundle,
		procs:       map[string]*processIO{"": pio},
		pid:         resp.Pid,
		spec:        spec,
		name:        pod.Name(),
		gpu:         hasGPU,
		stdio:       stdioLimiter,
		rootfs:      throttle,
	}
	s.mu.Unlock()
	log.G(ctx).WithField("pid", resp.Pid).Info("container created")
	return resp, nil
}

// policyConfig is what the pod policy needs to know about this node and pod.
func (s *service) policyConfig() sandbox.Config {
	p := s.cfg.Policy
	return sandbox.Config{
		PodDir:           s.volumeDir,
		KubeletRoot:      p.KubeletRoot,
		ContainerdRoot:   p.ContainerdRoot,
		ContainerdState:  p.ContainerdState,
		OOMScoreAdjFloor: s.oomFloor,
		ShmSize:          p.ShmSizeBytes,
	}
}

// ensureBackend starts the pod's backend shim on the first Create.
func (s *service) ensureBackend(ctx context.Context, id, bundle string) (*backendShim, bool, error) {
	s.mu.Lock()
	b := s.backend
	s.mu.Unlock()
	if b != nil {
		return b, false, nil
	}
	l := s.launch
	l.id, l.bundle = id, bundle
	b, err := startBackend(ctx, &l, s.backendClosed)
	if err != nil {
		return nil, false, err
	}
	if err := writeBackendRecord(s.podDir, backendRecord{Pid: b.pid, Address: b.address}); err != nil {
		b.stop(ctx, id)
		return nil, false, err
	}
	s.mu.Lock()
	s.backend = b
	s.mu.Unlock()
	log.G(ctx).WithField("backend_pid", b.pid).WithField("backend", s.adapter.Kind()).Info("backend shim started")
	return b, true, nil
}

// backendClosed runs when the connection to the backend drops. Outside our
// own shutdown that means the backend died, and with it every container of
// the pod: this shim exits, and containerd's cleanup of a dead shim (our
// delete subcommand) reaps what is left, the same path as our own crash.
func (s *service) backendClosed() {
	s.mu.Lock()
	expected := s.backend == nil
	s.mu.Unlock()
	if expected {
		return
	}
	log.G(s.ctx).Error("backend shim exited unexpectedly; shutting down so that containerd cleans up the pod")
	s.shutdown.Shutdown()
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
		s.mu.Lock()
		c.pid = resp.Pid
		s.mu.Unlock()
	}
	return resp, nil
}

// Exec interposes the exec process's stdio and forwards it.
func (s *service) Exec(ctx context.Context, r *taskv3.ExecProcessRequest) (_ *emptypb.Empty, retErr error) {
	c, t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	_, exists := c.procs[r.ExecID]
	s.mu.Unlock()
	if exists {
		return nil, fmt.Errorf("exec %q in container %q: %w", r.ExecID, r.ID, errdefs.ErrAlreadyExists)
	}
	procSpec := r.Spec
	if c.gpu {
		if procSpec, err = injectExecEnv(r.Spec); err != nil {
			return nil, err
		}
	}
	// An exec's output goes to its caller, not to the container's log
	// stream: it is not throttled, so its FIFOs pass straight through.
	pio, err := newProcessIO(s.ctx, filepath.Join(s.ioDir(), r.ID), "exec-"+r.ExecID,
		stdio{stdin: r.Stdin, stdout: r.Stdout, stderr: r.Stderr}, nil)
	if err != nil {
		return nil, err
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
		pio.close()
		return nil, err
	}
	s.mu.Lock()
	c.procs[r.ExecID] = pio
	s.mu.Unlock()
	return &emptypb.Empty{}, nil
}

func readSpec(path string) (*specs.Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading bundle spec: %w", err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("bundle spec %s: %w: %w", path, err, errdefs.ErrInvalidArgument)
	}
	return &spec, nil
}

func writeSpec(path string, spec *specs.Spec) error {
	data, err := json.Marshal(spec)
	if err != nil {
		return fmt.Errorf("encoding spec: %w", err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("writing backend spec: %w", err)
	}
	return nil
}
