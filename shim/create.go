package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cci-shim/cci-shim/iothrottle"
	"github.com/cci-shim/cci-shim/sandbox"
	"github.com/cci-shim/cci-shim/sandbox/backend"
)

// admission is a container's spec after the platform's rules, and what the
// rules decided.
type admission struct {
	spec   *specs.Spec
	pod    *sandbox.Pod
	plan   *sandbox.Plan
	limits iothrottle.Limits
}

// Create applies the platform's rules to the container's spec, writes it to
// a bundle of the backend's own, interposes stdio and forwards the Create.
// The first Create of the pod starts the backend shim. Each step records
// what it creates with the pod's owner before creating it; on failure the
// owner releases the container's resources (and the pod's, if this was its
// only container), newest first.
func (s *service) Create(ctx context.Context, r *taskv3.CreateTaskRequest) (_ *taskv3.CreateTaskResponse, retErr error) {
	s.createMu.Lock()
	defer s.createMu.Unlock()
	ctx = log.WithLogger(ctx, log.G(ctx).WithField(fieldID, r.ID))
	if s.closing {
		return nil, fmt.Errorf("container %q: the pod's shim is shutting down: %w", r.ID, errdefs.ErrFailedPrecondition)
	}
	if _, _, err := s.get(r.ID); err == nil {
		return nil, fmt.Errorf("container %q: %w", r.ID, errdefs.ErrAlreadyExists)
	}
	defer func() {
		if retErr != nil {
			s.undoCreate(ctx, r.ID)
		}
	}()

	a, err := s.admit(ctx, r)
	if err != nil {
		return nil, err
	}
	metrics, err := s.planPodMetrics(ctx, r.ID, a.spec, a.pod) // R27, shim/podmetrics.go
	if err != nil {
		return nil, err
	}
	if err := s.ownPodCgroup(ctx, r.ID, a); err != nil {
		return nil, err
	}
	s.failpoint("create:admitted", r.ID)
	if err := s.prepareVolumes(ctx, a.plan); err != nil {
		return nil, err
	}
	if err := s.pinSources(ctx, r.ID, a.plan); err != nil {
		return nil, err
	}
	s.failpoint("create:volumes", r.ID)
	if err := s.setupLogs(ctx, a.spec, a.pod); err != nil {
		return nil, err
	}
	c := newContainer(r.ID)
	c.frontBundle, c.name, c.spec = r.Bundle, a.pod.Name(), a.spec
	if c.gpu, err = s.assignGPUs(ctx, a.spec); err != nil {
		return nil, err
	}
	s.failpoint("create:gpus", r.ID)
	rootfs, err := s.throttleRootfs(ctx, c, a.pod, r.Rootfs, a.limits)
	if err != nil {
		return nil, err
	}
	s.failpoint("create:rootfs", r.ID)
	if err := s.adapter.AdjustSpec(a.spec, podSize(a)); err != nil {
		return nil, fmt.Errorf("adjusting spec for %s: %w", s.adapter.Kind(), err)
	}
	// Encoded once: the bundle's copy and the backend dir's are the same.
	specJSON, err := json.Marshal(a.spec)
	if err != nil {
		return nil, fmt.Errorf("encoding spec: %w", err)
	}
	if c.bundle, err = s.writeBundle(ctx, r.ID, specJSON); err != nil {
		return nil, err
	}
	s.failpoint("create:bundle", r.ID)
	pio, err := s.interposeStdio(ctx, c, r, a.limits.StdioBytesPerSec)
	if err != nil {
		return nil, err
	}
	s.failpoint("create:stdio", r.ID)
	b, err := s.ensureBackend(ctx, r.ID, specJSON)
	if err != nil {
		return nil, err
	}
	s.failpoint("create:backend", r.ID)
	resp, err := s.createTask(ctx, b, c, r, rootfs, pio)
	if err != nil {
		return nil, err
	}
	s.failpoint("create:task", r.ID)
	c.rootfs.openCounters(ctx)
	if err := s.watchRootfs(context.WithoutCancel(ctx), c); err != nil {
		return nil, err
	}
	// A caller that went away (containerd's connection closed: a restart)
	// never hears of this task, and containerd, reloading, treats an id its
	// shim did not know as leaked and leaves a pod's container to the pod's
	// shim. So the task is undone here rather than kept with no one to
	// delete it.
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("container %q: containerd went away during create: %w", r.ID, err)
	}
	if err := s.pod.commit(a, resp.Pid, s.traits.Isolation); err != nil {
		return nil, err
	}
	s.startPodMetrics(ctx, metrics, a.spec, resp.Pid) // R27, shim/podmetrics.go
	c.pid.Store(resp.Pid)
	c.addProc("", pio)
	s.mu.Lock()
	s.containers[r.ID] = c
	s.mu.Unlock()
	s.statsChanged()
	log.G(ctx).WithField("pid", resp.Pid).Info("container created")
	return resp, nil
}

// admit reads the container's spec (strictly: a field this shim does not
// know is refused, not passed on) and applies the pod policy to it.
func (s *service) admit(ctx context.Context, r *taskv3.CreateTaskRequest) (*admission, error) {
	spec, err := readSpec(filepath.Join(r.Bundle, "config.json"))
	if err != nil {
		return nil, err
	}
	pod, err := sandbox.PodOfContainer(spec, r.ID)
	if err != nil {
		return nil, err
	}
	if err := sandbox.CheckRootfs(pod.Name(), len(r.Rootfs)); err != nil {
		return nil, err
	}
	cfg := s.policyConfig()
	if !pod.IsSandbox() {
		if cfg.Pod = s.pod.state(); cfg.Pod == nil {
			return nil, fmt.Errorf("container %q: its pod's sandbox was not created by this shim: %w", r.ID, errdefs.ErrFailedPrecondition)
		}
	}
	plan, err := sandbox.Apply(spec, pod, cfg)
	if err != nil {
		return nil, err
	}
	for _, w := range plan.Warnings {
		log.G(ctx).Warn(w)
	}
	limits, err := iothrottle.LimitsFromConfig(s.cfg.Throttle.NodeLimits(), spec.Annotations)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	return &admission{spec: spec, pod: pod, plan: plan, limits: limits}, nil
}

// policyConfig is what the pod policy needs to know about this node and pod.
func (s *service) policyConfig() sandbox.Config {
	p := s.cfg.Policy
	return sandbox.Config{
		PodDir:                    s.volumeDir,
		PinDir:                    s.pinDir(),
		KubeletRoot:               p.KubeletRoot,
		ContainerdRoot:            p.ContainerdRoot,
		ContainerdState:           p.ContainerdState,
		ShimDirs:                  []string{s.cfg.StateDir, p.VolumeDir, s.cfg.Logs.FileDir},
		Namespace:                 s.launch.namespace,
		Isolation:                 s.traits.Isolation,
		AllowHostRootCapabilities: p.InsecureAllowHostRootCapabilities,
		AllowCompatSyscalls:       p.AllowCompatSyscalls,
		Namespaces:                sandbox.ProcResolver{},
		HostNamespaces:            s.hostNamespaces,
		OOMScoreAdjFloor:          s.oomFloor,
		ShmSize:                   p.ShmSizeBytes,
	}
}

// podSize is what the backend sizes the sandbox from: the normalised pod,
// for the pod's first container only.
func podSize(a *admission) backend.PodSize {
	plan := a.plan
	if plan.PodSize == nil || !a.pod.IsSandbox() {
		return backend.PodSize{}
	}
	return backend.PodSize{MilliCPU: plan.PodSize.Pod.MilliCPU, MemoryBytes: plan.PodSize.Pod.Memory}
}

// prepareVolumes mounts the pod's host volumes (/dev/shm, hostPath
// replacements). They are the pod's, shared by its containers: recorded once
// and released with the pod.
func (s *service) prepareVolumes(ctx context.Context, plan *sandbox.Plan) error {
	if !s.owner.has(resVolumes, "") {
		dir := s.volumeDir
		if err := s.owner.add(resource{Kind: resVolumes, Path: dir}, nil); err != nil {
			return err
		}
	}
	if _, err := sandbox.Prepare(plan, runOutput); err != nil {
		return fmt.Errorf("preparing pod volumes: %w", err)
	}
	return nil
}

// ownPodCgroup records the pod's cgroup parent when the shim chose it (the
// runtime creates it with the sandbox and leaves it behind), or raises
// kubelet's pod cgroup to the normalised pod size (R5, sandbox.RaisedPodCgroup).
func (s *service) ownPodCgroup(ctx context.Context, id string, a *admission) error {
	st := a.plan.State
	switch {
	case !a.pod.IsSandbox() || st == nil:
		return nil
	case sandbox.OwnedCgroupParent(st.CgroupParent):
		return s.owner.add(resource{Kind: resCgroup, Path: st.CgroupParent}, nil)
	case !sandbox.KubeletPodCgroup(st):
		return nil
	}
	cur, err := sandbox.ReadCgroupLimits(st.CgroupParent)
	if err != nil {
		return fmt.Errorf("reading kubelet's pod cgroup %s to size it (R5): %w", st.CgroupParent, err)
	}
	raised, changed := sandbox.RaisedPodCgroup(st, cur)
	if !changed {
		return nil
	}
	r := resource{Kind: resPodLimits, Container: id, Path: st.CgroupParent, Limits: &limitChange{Was: cur, Set: raised}}
	if err := s.owner.add(r, nil); err != nil {
		return err
	}
	if err := sandbox.WriteCgroupLimits(st.CgroupParent, raised); err != nil {
		return fmt.Errorf("raising kubelet's pod cgroup %s to the normalised pod size (R5): %w", st.CgroupParent, err)
	}
	log.G(ctx).WithField("cgroup", st.CgroupParent).WithField("was", fmt.Sprintf("%+v", cur)).
		WithField("set", fmt.Sprintf("%+v", raised)).Info("pod cgroup sized to the normalised pod (R5)")
	return nil
}

// pinSources mounts the platform bind sources the policy checked at the
// staging paths the spec names (sandbox.PinSources), recorded as the
// container's.
func (s *service) pinSources(ctx context.Context, id string, plan *sandbox.Plan) error {
	if len(plan.Pins) == 0 {
		return nil
	}
	var mounted []string
	dir := s.containerPinDir(id)
	unpin := func(context.Context) error { return errors.Join(sandbox.UnpinSources(mounted), unmountAll(dir)) }
	if err := s.owner.add(resource{Kind: resMounts, Container: id, Path: dir}, unpin); err != nil {
		return err
	}
	var err error
	if mounted, err = sandbox.PinSources(plan.Pins); err != nil {
		return fmt.Errorf("%w: %w", err, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// writeBundle writes the container's spec into a bundle of the backend's own.
func (s *service) writeBundle(ctx context.Context, id string, specJSON []byte) (string, error) {
	bundle := s.bundleDir(id)
	if err := s.owner.add(resource{Kind: resMounts, Container: id, Path: bundle}, nil); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Join(bundle, "rootfs"), 0o711); err != nil {
		return "", fmt.Errorf("creating backend bundle: %w", err)
	}
	if err := writeSpec(filepath.Join(bundle, "config.json"), specJSON); err != nil {
		return "", err
	}
	return bundle, nil
}

// interposeStdio puts the shim between the backend and containerd's FIFOs
// for the init process when its output is throttled.
func (s *service) interposeStdio(ctx context.Context, c *container, r *taskv3.CreateTaskRequest, bps int64) (*processIO, error) {
	dir := s.ioDir(c.id)
	var pio *processIO
	closeIO := func(context.Context) error {
		if pio != nil {
			pio.close()
		}
		return os.RemoveAll(dir)
	}
	if err := s.owner.add(resource{Kind: resDir, Container: c.id, Path: dir}, closeIO); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating stdio dir: %w", err)
	}
	if bps > 0 {
		c.stdio = iothrottle.NewLimiter(bps)
	}
	var err error
	pio, err = newProcessIO(s.ctx, dir, "init", stdio{stdin: r.Stdin, stdout: r.Stdout, stderr: r.Stderr}, c.stdio)
	return pio, err
}

// createTask forwards the Create to the backend, recording the task first so
// that a failed later step deletes it again.
func (s *service) createTask(ctx context.Context, b *backendShim, c *container, r *taskv3.CreateTaskRequest, rootfs []*types.Mount, pio *processIO) (*taskv3.CreateTaskResponse, error) {
	deleteTask := func(ctx context.Context) error {
		// Killed first, as containerd's WithProcessKill does: runc's shim
		// deletes a created task only once its stdio has drained, which
		// the init holds open until it dies (10 s otherwise).
		if _, err := b.task.Kill(ctx, &taskv3.KillRequest{ID: c.id, Signal: uint32(unix.SIGKILL), All: true}); err != nil && !errdefs.IsNotFound(err) {
			log.G(ctx).WithError(err).Warn("killing the task of a failed create")
		}
		_, err := b.task.Delete(ctx, &taskv3.DeleteRequest{ID: c.id})
		return taskGone(err)
	}
	if err := s.owner.add(resource{Kind: resTask, Container: c.id, Path: c.bundle}, deleteTask); err != nil {
		return nil, err
	}
	resp, err := b.task.Create(ctx, &taskv3.CreateTaskRequest{
		ID:               r.ID,
		Bundle:           c.bundle,
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
	return resp, nil
}

// undoCreate releases what a failed Create set up. If the pod has no
// container left, the pod's own resources go too (backend, volumes, log
// collector, GPUs): nothing half-started stays behind a failed first Create.
func (s *service) undoCreate(ctx context.Context, id string) {
	ctx = context.WithoutCancel(ctx)
	if err := s.owner.releaseContainer(ctx, id); err != nil {
		log.G(ctx).WithError(err).Warn("undoing create")
	}
	if s.noContainers() {
		s.releasePod(ctx)
	}
}

// ensureBackend starts the pod's backend shim on the first Create, in a
// directory of its own (not a container's bundle, which goes with the
// container), holding a copy of the first spec for the backend's grouping.
func (s *service) ensureBackend(ctx context.Context, id string, specJSON []byte) (*backendShim, error) {
	s.mu.Lock()
	b := s.backend
	s.mu.Unlock()
	if b != nil {
		return b, nil
	}
	dir := s.backendDir()
	rec := resource{Kind: resBackend, Path: dir}
	var started *backendShim
	stop := func(ctx context.Context) error {
		s.mu.Lock()
		b := s.backend
		s.backend = nil // from here a closed connection is expected
		s.mu.Unlock()
		if b == nil {
			b = started
		}
		if b != nil {
			b.stop(ctx, id)
		}
		return os.RemoveAll(dir)
	}
	if err := s.owner.add(rec, stop); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating backend dir: %w", err)
	}
	if err := writeSpec(filepath.Join(dir, "config.json"), specJSON); err != nil {
		return nil, err
	}
	l := s.launch
	l.id, l.bundle = id, dir
	b, err := s.startBackend(ctx, &l, func(address string) error {
		rec.Address = address
		return s.owner.update(rec, nil)
	}, s.backendClosed)
	if err != nil {
		return nil, err
	}
	started = b
	rec.Proc = b.proc
	if err := s.owner.update(rec, nil); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.backend = b
	s.launch.id = id
	s.mu.Unlock()
	log.G(ctx).WithField("backend_pid", b.proc.Pid).WithField("backend", s.adapter.Kind()).Info("backend shim started")
	return b, nil
}

// backendClosed runs when the connection to the backend drops. Outside our
// own teardown that means the backend died, and with it every container of
// the pod: this shim exits, and containerd's cleanup of a dead shim (our
// delete subcommand) releases what is left, the same path as our own crash.
func (s *service) backendClosed() {
	s.mu.Lock()
	expected := s.backend == nil || s.stopping
	s.mu.Unlock()
	if expected {
		return
	}
	log.G(s.ctx).Error("backend shim exited unexpectedly; shutting down so that containerd cleans up the pod")
	s.shutdown.Shutdown()
}

// readSpec reads a bundle's spec strictly (sandbox.DecodeSpec): a field the
// policy does not know is refused by name.
func readSpec(path string) (*specs.Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading bundle spec: %w", err)
	}
	return sandbox.DecodeSpec(data)
}

// readAnnotations reads only a bundle's annotations, leniently: the start
// and delete subcommands need the pod's id before any policy runs.
func readAnnotations(path string) map[string]string {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var spec struct {
		Annotations map[string]string `json:"annotations"`
	}
	if json.Unmarshal(data, &spec) != nil {
		return nil
	}
	return spec.Annotations
}

func writeSpec(path string, specJSON []byte) error {
	if err := os.WriteFile(path, specJSON, 0o600); err != nil {
		return fmt.Errorf("writing backend spec: %w", err)
	}
	return nil
}
