package shim

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/cci-shim/cci-shim/config"
	"github.com/cci-shim/cci-shim/logfwd"
	"github.com/cci-shim/cci-shim/sandbox"
	"github.com/cci-shim/cci-shim/sandbox/backend"
)

// Log field keys, attached once per request.
const (
	fieldID     = "id"
	fieldExecID = "exec_id"
)

// service is the Task API containerd sees. Each RPC finds the container,
// forwards to the pod's backend shim and returns; the platform's rules run in
// Create and Exec (create.go, exec.go), teardown in Delete and Shutdown
// (delete.go). Every host resource of the pod belongs to the owner.
type service struct {
	// ctx lives as long as the shim process: background work (stdio
	// copies, the log collector) must outlive the RPC that started it.
	ctx       context.Context
	cfg       config.Config
	cfgPath   string // the node config file, named in errors about it
	adapter   backend.Adapter
	traits    backend.Traits
	publisher shim.Publisher
	shutdown  shutdown.Service
	relay     *eventRelay
	gpus      *gpus
	owner     *owner
	launch    launch // template for the pod's backend; id and bundle set when it starts
	podDir    string // <state_dir>/<namespace>/<pod id>
	volumeDir string // <policy.volume_dir>/<namespace>/<pod id>: the pod's host volumes
	gpuKey    string // the pod in the node's GPU ledger
	oomFloor  int    // the lowest oom_score_adj this host lets us set
	address   string // our own socket

	// createMu serialises the RPCs that change the pod's set of resources:
	// Create, a log policy Update and Shutdown. Other RPCs never take it.
	createMu sync.Mutex
	logs     *podLogs // guarded by createMu; nil without a log policy
	closing  bool     // guarded by createMu: Shutdown began the pod's teardown
	// collector is logs.collector for readers that must not wait on
	// createMu (the stats writer).
	collector atomic.Pointer[logfwd.Collector]
	// statsKick asks the stats writer for an early rewrite (statsChanged).
	statsKick chan struct{}

	mu         sync.Mutex
	backend    *backendShim          // guarded by mu; nil until the first Create
	containers map[string]*container // guarded by mu
	stopping   bool                  // guarded by mu: the backend going away is expected
	// sandboxCgroupPath is the host cgroup of the pod's sandbox (its first
	// container's), where a sandboxing backend's rootfs limits go.
	sandboxCgroupPath string // guarded by mu
	failpoints        failpoints
	startBackend      backendStarter
	pod               *podPolicy
	hostNamespaces    []sandbox.NSRef // the host's own, which no container may join
}

var (
	_ taskv3.TTRPCTaskService       = (*service)(nil)
	_ eventsapi.TTRPCEventsService  = (*eventRelay)(nil)
	_ shim.TTRPCServerUnaryOptioner = (*service)(nil)
)

// RegisterTTRPC serves the Task API to containerd and the events API to the
// backend (our event relay) on the same socket.
func (s *service) RegisterTTRPC(server *ttrpc.Server) error {
	taskv3.RegisterTTRPCTaskService(server, s)
	eventsapi.RegisterTTRPCEventsService(server, s.relay)
	return nil
}

// UnaryServerInterceptor converts errors to gRPC codes at the API boundary,
// recovers panics and logs failed calls, once for every RPC.
func (s *service) UnaryServerInterceptor() ttrpc.UnaryServerInterceptor {
	return func(ctx context.Context, unmarshal ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, method ttrpc.Method) (resp interface{}, err error) {
		start := time.Now()
		defer func() {
			if r := recover(); r != nil {
				log.G(ctx).WithField("method", info.FullMethod).Errorf("panic: %v\n%s", r, debug.Stack())
				err = fmt.Errorf("internal error in %s: %v", info.FullMethod, r)
			}
			if err != nil {
				log.G(ctx).WithError(err).WithField("method", info.FullMethod).Warn("request failed")
				err = errgrpc.ToGRPC(err)
			} else {
				log.G(ctx).WithField("method", info.FullMethod).WithField("duration", time.Since(start)).Debug("request")
			}
		}()
		return method(ctx, unmarshal)
	}
}

// task returns the backend client, or an error before the first Create.
func (s *service) task() (*taskClient, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.backend == nil {
		return nil, fmt.Errorf("no backend shim: no container created yet: %w", errdefs.ErrFailedPrecondition)
	}
	return s.backend.task, nil
}

// get returns the container and the backend client for id.
func (s *service) get(id string) (*container, *taskClient, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok || s.backend == nil {
		return nil, nil, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	return c, s.backend.task, nil
}

func (s *service) noContainers() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.containers) == 0
}

func (s *service) processIO(id, execID string) *processIO {
	s.mu.Lock()
	c, ok := s.containers[id]
	s.mu.Unlock()
	if !ok {
		return nil
	}
	return c.proc(execID)
}

// exited runs when a process of the pod has exited: a container's claims on
// the pod (the R5 increment) pass on.
func (s *service) exited(id, execID string) {
	if execID != "" {
		return
	}
	s.statsChanged()
	if err := s.pod.exited(id); err != nil {
		log.G(s.ctx).WithError(err).WithField(fieldID, id).Warn("updating the pod's policy state")
	}
}

// drain waits for a process's output to reach containerd.
func (s *service) drain(id, execID string, timeout time.Duration) {
	if p := s.processIO(id, execID); p != nil && !p.waitOutput(timeout) {
		log.G(s.ctx).WithField(fieldID, id).WithField(fieldExecID, execID).Warn("process output still open after exit; publishing exit anyway")
	}
}

func (s *service) State(ctx context.Context, r *taskv3.StateRequest) (*taskv3.StateResponse, error) {
	c, t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	resp, err := t.State(ctx, r)
	if err != nil {
		return nil, err
	}
	// Report containerd's own stdio paths and bundle, not our interposed ones.
	resp.Bundle = c.frontBundle
	if p := s.processIO(r.ID, r.ExecID); p != nil {
		resp.Stdin, resp.Stdout, resp.Stderr = p.front.stdin, p.front.stdout, p.front.stderr
	}
	return resp, nil
}

func (s *service) Pids(ctx context.Context, r *taskv3.PidsRequest) (*taskv3.PidsResponse, error) {
	_, t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	return t.Pids(ctx, r)
}

func (s *service) Pause(ctx context.Context, r *taskv3.PauseRequest) (*emptypb.Empty, error) {
	_, t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	return t.Pause(ctx, r)
}

func (s *service) Resume(ctx context.Context, r *taskv3.ResumeRequest) (*emptypb.Empty, error) {
	_, t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	return t.Resume(ctx, r)
}

func (s *service) Checkpoint(ctx context.Context, r *taskv3.CheckpointTaskRequest) (*emptypb.Empty, error) {
	_, t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	return t.Checkpoint(ctx, r)
}

func (s *service) Kill(ctx context.Context, r *taskv3.KillRequest) (*emptypb.Empty, error) {
	_, t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	return t.Kill(ctx, r)
}

func (s *service) ResizePty(ctx context.Context, r *taskv3.ResizePtyRequest) (*emptypb.Empty, error) {
	_, t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	return t.ResizePty(ctx, r)
}

// CloseIO lets the client's last stdin bytes through before the backend
// closes the process's stdin.
func (s *service) CloseIO(ctx context.Context, r *taskv3.CloseIORequest) (*emptypb.Empty, error) {
	_, t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	if p := s.processIO(r.ID, r.ExecID); p != nil && r.Stdin {
		p.closeStdin()
	}
	return t.CloseIO(ctx, r)
}

// Update forwards a resource update; a changed log policy in its annotations
// applies to the running pod (R19 beyond: no redeploy).
func (s *service) Update(ctx context.Context, r *taskv3.UpdateTaskRequest) (*emptypb.Empty, error) {
	_, t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	if err := s.updateLogs(ctx, r.Annotations); err != nil {
		return nil, err
	}
	return t.Update(ctx, r)
}

// Wait returns once the process has exited and its output has been copied
// through to containerd.
func (s *service) Wait(ctx context.Context, r *taskv3.WaitRequest) (*taskv3.WaitResponse, error) {
	_, t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	resp, err := t.Wait(ctx, r)
	if err != nil {
		return nil, err
	}
	s.drain(r.ID, r.ExecID, exitDrainTimeout)
	return resp, nil
}

func (s *service) Stats(ctx context.Context, r *taskv3.StatsRequest) (*taskv3.StatsResponse, error) {
	_, t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	return t.Stats(ctx, r)
}

// Connect reports this shim's pid: containerd manages the front shim; the
// backend is ours to manage.
func (s *service) Connect(ctx context.Context, r *taskv3.ConnectRequest) (*taskv3.ConnectResponse, error) {
	resp := &taskv3.ConnectResponse{ShimPid: uint32(os.Getpid())}
	c, t, err := s.get(r.ID)
	if err != nil {
		return resp, nil
	}
	br, err := t.Connect(ctx, r)
	if err != nil {
		return nil, err
	}
	resp.TaskPid, resp.Version = br.TaskPid, br.Version
	if resp.TaskPid == 0 {
		resp.TaskPid = c.pid.Load()
	}
	return resp, nil
}

func (s *service) bundleDir(id string) string { return filepath.Join(s.podDir, "bundles", id) }
func (s *service) ioDir(id string) string     { return filepath.Join(s.podDir, "io", id) }
func (s *service) backendDir() string         { return filepath.Join(s.podDir, "backend") }

// pinDir holds the mount points of the pod's pinned bind sources: on the
// state tmpfs, like the bundles' rootfs mounts.
func (s *service) pinDir() string { return filepath.Join(s.podDir, "pins") }

// containerPinDir holds a container's pins: the path of their owner record.
func (s *service) containerPinDir(id string) string { return filepath.Join(s.pinDir(), id) }
