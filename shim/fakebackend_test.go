package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/containerd/v2/pkg/protobuf"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/fifo"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/cci-shim/cci-shim/config"
	"github.com/cci-shim/cci-shim/internal/testutil"
	"github.com/cci-shim/cci-shim/sandbox/backend"
)

// fakeBackend is a backend shim served in process over real ttrpc: it
// records every call, can fail or block Create, writes the init process's
// output into the stdout FIFO it is given, and sends its events to the cci
// shim's relay the way a real backend does (through the events service on
// TTRPC_ADDRESS).
type fakeBackend struct {
	t      *testing.T
	relay  eventsapi.TTRPCEventsService
	ns     string
	pid    uint32 // every task's pid: a real process, whose namespaces the policy reads
	server *ttrpc.Server

	mu        sync.Mutex
	calls     []string                 // "Method id"
	stdout    map[string]string        // container -> stdout path it was given
	exits     map[string]chan struct{} // closed when the init exits
	createErr error
	block     chan struct{} // Create waits for it when not nil
	entered   chan struct{} // closed when a Create starts waiting on block
}

// tasks lists the tasks the backend holds (created, not deleted).
func (f *fakeBackend) tasks() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(maps.Keys(f.exits))
}

func (f *fakeBackend) record(method, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, method+" "+id)
}

func (f *fakeBackend) callList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeBackend) event(topic string, evt any) {
	a, err := typeurl.MarshalAnyToProto(evt)
	if err != nil {
		f.t.Errorf("marshal event: %v", err)
		return
	}
	_, err = f.relay.Forward(context.Background(), &eventsapi.ForwardRequest{Envelope: &types.Envelope{
		Timestamp: protobuf.ToTimestamp(time.Now()), Namespace: f.ns, Topic: topic, Event: a}})
	if err != nil {
		f.t.Errorf("forward event: %v", err)
	}
}

func (f *fakeBackend) Create(ctx context.Context, r *taskv3.CreateTaskRequest) (*taskv3.CreateTaskResponse, error) {
	f.record("Create", r.ID)
	f.mu.Lock()
	block, entered, cerr := f.block, f.entered, f.createErr
	f.stdout[r.ID] = r.Stdout
	f.mu.Unlock()
	if block != nil {
		close(entered)
		<-block
	}
	if cerr != nil {
		return nil, errgrpc.ToGRPC(cerr)
	}
	// The task exists once Create has finished, as in runc's shim: a
	// Delete while it is being created finds nothing.
	f.mu.Lock()
	f.exits[r.ID] = make(chan struct{})
	f.mu.Unlock()
	f.event("/tasks/create", &eventstypes.TaskCreate{ContainerID: r.ID, Bundle: r.Bundle, Pid: f.pid})
	return &taskv3.CreateTaskResponse{Pid: f.pid}, nil
}

func (f *fakeBackend) Start(ctx context.Context, r *taskv3.StartRequest) (*taskv3.StartResponse, error) {
	f.record("Start", r.ID)
	return &taskv3.StartResponse{Pid: f.pid}, nil
}

func (f *fakeBackend) Delete(ctx context.Context, r *taskv3.DeleteRequest) (*taskv3.DeleteResponse, error) {
	f.record("Delete", r.ID)
	f.mu.Lock()
	_, ok := f.exits[r.ID]
	delete(f.exits, r.ID)
	f.mu.Unlock()
	if !ok {
		return nil, errgrpc.ToGRPC(fmt.Errorf("task %s: %w", r.ID, errdefs.ErrNotFound))
	}
	return &taskv3.DeleteResponse{Pid: f.pid, ExitStatus: 0}, nil
}

func (f *fakeBackend) State(ctx context.Context, r *taskv3.StateRequest) (*taskv3.StateResponse, error) {
	f.record("State", r.ID)
	return &taskv3.StateResponse{ID: r.ID, Pid: f.pid}, nil
}

func (f *fakeBackend) Kill(ctx context.Context, r *taskv3.KillRequest) (*emptypb.Empty, error) {
	f.record("Kill", r.ID)
	f.mu.Lock()
	_, ok := f.exits[r.ID]
	f.mu.Unlock()
	if !ok {
		return nil, errgrpc.ToGRPC(fmt.Errorf("task %s: %w", r.ID, errdefs.ErrNotFound))
	}
	return &emptypb.Empty{}, nil
}

func (f *fakeBackend) Stats(ctx context.Context, r *taskv3.StatsRequest) (*taskv3.StatsResponse, error) {
	f.record("Stats", r.ID)
	return &taskv3.StatsResponse{}, nil
}

func (f *fakeBackend) Pids(ctx context.Context, r *taskv3.PidsRequest) (*taskv3.PidsResponse, error) {
	f.record("Pids", r.ID)
	return &taskv3.PidsResponse{}, nil
}

func (f *fakeBackend) Update(ctx context.Context, r *taskv3.UpdateTaskRequest) (*emptypb.Empty, error) {
	f.record("Update", r.ID)
	return &emptypb.Empty{}, nil
}

func (f *fakeBackend) Wait(ctx context.Context, r *taskv3.WaitRequest) (*taskv3.WaitResponse, error) {
	f.record("Wait", r.ID)
	f.mu.Lock()
	ch := f.exits[r.ID]
	f.mu.Unlock()
	if ch != nil {
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return &taskv3.WaitResponse{ExitStatus: 0}, nil
}

func (f *fakeBackend) Connect(ctx context.Context, r *taskv3.ConnectRequest) (*taskv3.ConnectResponse, error) {
	f.record("Connect", r.ID)
	return &taskv3.ConnectResponse{ShimPid: uint32(os.Getpid())}, nil
}

func (f *fakeBackend) Shutdown(ctx context.Context, r *taskv3.ShutdownRequest) (*emptypb.Empty, error) {
	f.record("Shutdown", r.ID)
	return &emptypb.Empty{}, nil
}

func (f *fakeBackend) Pause(ctx context.Context, r *taskv3.PauseRequest) (*emptypb.Empty, error) {
	f.record("Pause", r.ID)
	return &emptypb.Empty{}, nil
}

func (f *fakeBackend) Resume(ctx context.Context, r *taskv3.ResumeRequest) (*emptypb.Empty, error) {
	f.record("Resume", r.ID)
	return &emptypb.Empty{}, nil
}

func (f *fakeBackend) Checkpoint(ctx context.Context, r *taskv3.CheckpointTaskRequest) (*emptypb.Empty, error) {
	f.record("Checkpoint", r.ID)
	return &emptypb.Empty{}, nil
}

func (f *fakeBackend) Exec(ctx context.Context, r *taskv3.ExecProcessRequest) (*emptypb.Empty, error) {
	f.record("Exec", r.ID)
	return &emptypb.Empty{}, nil
}

func (f *fakeBackend) ResizePty(ctx context.Context, r *taskv3.ResizePtyRequest) (*emptypb.Empty, error) {
	f.record("ResizePty", r.ID)
	return &emptypb.Empty{}, nil
}

func (f *fakeBackend) CloseIO(ctx context.Context, r *taskv3.CloseIORequest) (*emptypb.Empty, error) {
	f.record("CloseIO", r.ID)
	return &emptypb.Empty{}, nil
}

var _ taskv3.TTRPCTaskService = (*fakeBackend)(nil)

// exit makes container id's init write output to its stdout FIFO (held
// open by the backend as a real one does), close it and exit.
func (f *fakeBackend) exit(id string, output []byte) {
	f.mu.Lock()
	path, ch := f.stdout[id], f.exits[id]
	f.mu.Unlock()
	if path != "" {
		w, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			f.t.Errorf("backend opening stdout %s: %v", path, err)
			return
		}
		if _, err := w.Write(output); err != nil {
			f.t.Errorf("backend writing stdout: %v", err)
		}
		w.Close()
	}
	close(ch)
	f.event("/tasks/exit", &eventstypes.TaskExit{ContainerID: id, ID: id, Pid: f.pid})
}

// fakePublisher is containerd's events endpoint: it records what the shim
// publishes.
type fakePublisher struct {
	mu     sync.Mutex
	events []publishedEvent
	ch     chan publishedEvent
}

type publishedEvent struct {
	topic string
	evt   any
}

func (p *fakePublisher) Publish(ctx context.Context, topic string, evt events.Event) error {
	e := publishedEvent{topic, evt}
	p.mu.Lock()
	p.events = append(p.events, e)
	p.mu.Unlock()
	p.ch <- e
	return nil
}

func (p *fakePublisher) Close() error { return nil }

// next waits for the next published event.
func (p *fakePublisher) next(t *testing.T, timeout time.Duration) publishedEvent {
	t.Helper()
	select {
	case e := <-p.ch:
		return e
	case <-time.After(timeout):
		t.Fatalf("no event published within %v", timeout)
		return publishedEvent{}
	}
}

// fakeAdapter is a runc-like backend that is never executed.
type fakeAdapter struct{}

func (fakeAdapter) Kind() string                                  { return "fake" }
func (fakeAdapter) Binary() string                                { return "/nonexistent/fake-backend" }
func (fakeAdapter) Options() (*anypb.Any, error)                  { return nil, nil }
func (fakeAdapter) AdjustSpec(*specs.Spec, backend.PodSize) error { return nil }
func (fakeAdapter) Traits() backend.Traits {
	return backend.Traits{Isolation: backend.IsolationNone, RootfsThrottle: backend.ThrottleContainer,
		GPU: backend.GPUDeviceNodes, PodMetrics: backend.MetricsHostNetns}
}

// testPod is one pod's task service with an in-process backend.
type testPod struct {
	t       *testing.T
	dir     string
	rootfs  string // an ext4 image every container's rootfs is a loop mount of
	svc     *service
	backend *fakeBackend
	pub     *fakePublisher
	ctx     context.Context
}

// newTestPod builds the task service of pod "pod" on a fake backend, with
// the node's stdout throttle at stdioBps (0: pass-through).
func newTestPod(t *testing.T, stdioBps int64) *testPod {
	t.Helper()
	testutil.RequireRoot(t, "the shim mounts the pod's /dev/shm tmpfs")
	dir, err := os.MkdirTemp("/tmp", "cci-svc-") // short: unix socket paths
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.Policy.VolumeDir = filepath.Join(dir, "volumes")
	cfg.Policy.KubeletRoot = filepath.Join(dir, "kubelet")
	cfg.Policy.ContainerdRoot = filepath.Join(dir, "croot")
	cfg.Policy.ContainerdState = filepath.Join(dir, "cstate")
	cfg.Logs.FileDir = filepath.Join(dir, "podlogs")
	cfg.GPU.StateDir = filepath.Join(dir, "gpu")
	cfg.Throttle.StdioBps = stdioBps
	cfg.Rootfs.SizeBytes = 32 << 20   // testutil.Ext4Image's
	cfg.Throttle.RootfsBurstBytes = 0 // the fake makes no cgroup for a burst watcher to watch

	ctx, cancel := context.WithCancel(namespaces.WithNamespace(context.Background(), "test"))
	_, sd := shutdown.WithShutdown(ctx)
	pub := &fakePublisher{ch: make(chan publishedEvent, 100)}
	task := exec.Command("sleep", "3600")
	if err := task.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { task.Process.Kill(); task.Wait() })
	fb := &fakeBackend{t: t, ns: "test", pid: uint32(task.Process.Pid), stdout: map[string]string{}, exits: map[string]chan struct{}{}}
	p := &testPod{t: t, dir: dir, backend: fb, pub: pub, ctx: ctx}
	sock := filepath.Join(dir, "backend.sock")
	svc, err := newTaskService(ctx, serviceDeps{
		cfg: cfg, adapter: fakeAdapter{}, publisher: pub, shutdown: sd,
		namespace: "test", pod: "pod", address: "unix://" + filepath.Join(dir, "cci.sock"),
		startBackend: func(ctx context.Context, l *launch, recordStarted func(string) error, onClose func()) (*backendShim, error) {
			return fb.serve(ctx, sock, recordStarted, onClose)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	fb.relay = svc.relay
	p.svc = svc
	p.rootfs = testutil.Ext4Image(t, filepath.Join(dir, "rootfs.img"))
	t.Cleanup(func() {
		// Whatever the test left running goes the way a pod's does.
		if err := svc.owner.releaseAll(context.WithoutCancel(ctx)); err != nil {
			t.Errorf("releasing the pod's resources: %v", err)
		}
		cancel()
		if fb.server != nil {
			fb.server.Close()
		}
		assertNoMountsUnder(t, dir)
		os.RemoveAll(dir)
	})
	return p
}

// serve starts the fake backend's ttrpc server and connects to it.
func (f *fakeBackend) serve(ctx context.Context, sock string, recordStarted func(string) error, onClose func()) (*backendShim, error) {
	f.record("start", "")
	server, err := ttrpc.NewServer()
	if err != nil {
		return nil, err
	}
	taskv3.RegisterTTRPCTaskService(server, f)
	l, err := net.Listen("unix", sock)
	if err != nil {
		return nil, err
	}
	f.server = server
	go server.Serve(context.Background(), l)
	address := "unix://" + sock
	if err := recordStarted(address); err != nil {
		return nil, err
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		return nil, err
	}
	client := ttrpc.NewClient(conn, ttrpc.WithOnClose(onClose))
	done := make(chan struct{})
	close(done)
	// proc stays zero: stopping the fake must never signal the test process.
	return &backendShim{address: address, version: 3, conn: client, task: newTaskClient(client, 3),
		logs: io.NopCloser(nil), logDone: done}, nil
}

// bundle writes containerd's bundle for container id: the default spec ctr
// would generate, with extra spec options.
func (p *testPod) bundle(id string, opts ...oci.SpecOpts) string {
	p.t.Helper()
	dir := filepath.Join(p.dir, "front", id)
	if err := os.MkdirAll(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		p.t.Fatal(err)
	}
	spec, err := oci.GenerateSpec(p.ctx, nil, &containers.Container{ID: id}, opts...)
	if err != nil {
		p.t.Fatal(err)
	}
	data, err := json.Marshal(spec)
	if err != nil {
		p.t.Fatal(err)
	}
	if err := writeSpec(filepath.Join(dir, "config.json"), data); err != nil {
		p.t.Fatal(err)
	}
	return dir
}

// frontFIFO creates containerd's stdout FIFO for id and opens its reader.
func (p *testPod) frontFIFO(id string) (string, io.ReadCloser) {
	p.t.Helper()
	path := filepath.Join(p.dir, "front", id+"-stdout")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		p.t.Fatal(err)
	}
	if err := syscall.Mkfifo(path, 0o600); err != nil && !errors.Is(err, os.ErrExist) {
		p.t.Fatal(err)
	}
	r, err := fifo.OpenFifo(p.ctx, path, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { r.Close() })
	return path, r
}

// create runs Create for id with its stdout at stdout, its rootfs a loop
// mount of the pod's image as the blockfile snapshotter hands it over.
func (p *testPod) create(id, stdout string, opts ...oci.SpecOpts) (*taskv3.CreateTaskResponse, error) {
	return p.svc.Create(p.ctx, &taskv3.CreateTaskRequest{ID: id, Bundle: p.bundle(id, opts...), Stdout: stdout,
		Rootfs: []*types.Mount{{Type: "ext4", Source: p.rootfs, Options: []string{"loop", "rw"}}}})
}
