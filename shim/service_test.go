package shim

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
)

// TestLifecycle: Create, Start, Delete and Shutdown of one container leave
// no state, no mount and no record behind, and the backend saw each step.
func TestLifecycle(t *testing.T) {
	p := newTestPod(t, 0)
	if _, err := p.create("c1", "", oci.WithProcessArgs("/bin/true")); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := p.svc.Start(p.ctx, &taskv3.StartRequest{ID: "c1"}); err != nil {
		t.Fatalf("Start: %v", err)
	}
	p.backend.exit("c1", nil)
	if _, err := p.svc.Delete(p.ctx, &taskv3.DeleteRequest{ID: "c1"}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := p.svc.Shutdown(p.ctx, &taskv3.ShutdownRequest{ID: "c1"}); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	p.waitShutdown(t)
	want := []string{"start ", "Create c1", "Start c1", "Delete c1", "Shutdown c1"}
	if got := p.backend.callList(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("backend calls = %q, want %q", got, want)
	}
	if _, err := os.Stat(p.svc.podDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pod state dir left: %v", err)
	}
	if _, err := os.Stat(p.svc.volumeDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pod volume dir left: %v", err)
	}
	assertNoMountsUnder(t, p.dir)
}

// TestCreateFailureUndoesNewestFirst: a backend that refuses Create leaves
// nothing: the task is deleted before the backend is stopped, bundle, FIFOs
// and volumes go, and only the shim's own record remains.
func TestCreateFailureUndoesNewestFirst(t *testing.T) {
	p := newTestPod(t, 1_000_000)
	p.backend.createErr = errors.New("backend refuses")
	stdout, _ := p.frontFIFO("c1")
	_, err := p.create("c1", stdout, oci.WithProcessArgs("/bin/true"))
	if err == nil || !strings.Contains(err.Error(), "backend refuses") {
		t.Fatalf("Create error = %v, want the backend's", err)
	}
	want := []string{"start ", "Create c1", "Kill c1", "Delete c1", "Shutdown c1"}
	if got := p.backend.callList(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("backend calls = %q, want %q (task deleted before the backend stops)", got, want)
	}
	for _, d := range []string{p.svc.bundleDir("c1"), p.svc.ioDir("c1"), p.svc.backendDir(), p.svc.volumeDir} {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after a failed Create: %v", d, err)
		}
	}
	recs := readRecords(t, p.svc.podDir)
	if len(recs) != 1 || recs[0].Kind != resShim {
		t.Errorf("records after a failed Create = %+v, want only the shim's own", recs)
	}
	assertNoMountsUnder(t, p.dir)

	// The pod can still be used: a later Create starts a new backend.
	p.backend.createErr = nil
	if _, err := p.create("c2", "", oci.WithProcessArgs("/bin/true")); err != nil {
		t.Fatalf("Create after a failed one: %v", err)
	}
}

// TestRPCsDoNotWaitOnCreate: while a Create waits in the backend, the
// other RPCs of an existing container are answered, Shutdown included.
func TestRPCsDoNotWaitOnCreate(t *testing.T) {
	p := newTestPod(t, 0)
	if _, err := p.create("c1", "", oci.WithProcessArgs("/bin/true")); err != nil {
		t.Fatal(err)
	}
	block, entered := make(chan struct{}), make(chan struct{})
	p.backend.mu.Lock()
	p.backend.block, p.backend.entered = block, entered
	p.backend.mu.Unlock()
	created := make(chan error, 1)
	go func() {
		_, err := p.create("c2", "", oci.WithProcessArgs("/bin/true"))
		created <- err
	}()
	<-entered
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for _, call := range []func(context.Context) error{
		func(ctx context.Context) error {
			_, err := p.svc.State(ctx, &taskv3.StateRequest{ID: "c1"})
			return err
		},
		func(ctx context.Context) error {
			_, err := p.svc.Kill(ctx, &taskv3.KillRequest{ID: "c1", Signal: 15})
			return err
		},
		func(ctx context.Context) error {
			_, err := p.svc.Stats(ctx, &taskv3.StatsRequest{ID: "c1"})
			return err
		},
		func(ctx context.Context) error { _, err := p.svc.Pids(ctx, &taskv3.PidsRequest{ID: "c1"}); return err },
		func(ctx context.Context) error {
			_, err := p.svc.Shutdown(ctx, &taskv3.ShutdownRequest{ID: "c1"})
			return err
		},
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(p.ctx, 2*time.Second)
			defer cancel()
			errs <- call(ctx)
		}()
	}
	if !waitTimeout(&wg, 5*time.Second) {
		close(block)
		t.Fatal("an RPC waited for the blocked Create")
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("RPC during a blocked Create: %v", err)
		}
	}
	p.writeStatsNow(t)
	close(block)
	if err := <-created; err != nil {
		t.Fatalf("blocked Create: %v", err)
	}
}

// TestCreateWhoseCallerWentAway: containerd dies (its connection closes,
// the request's context is cancelled) while the backend creates the task.
// The backend's answer is still awaited, and the task it created is
// deleted: containerd never heard of it, and after its restart it would
// find no one to delete it. The pod's first Create leaves nothing behind.
func TestCreateWhoseCallerWentAway(t *testing.T) {
	p := newTestPod(t, 0)
	block, entered := make(chan struct{}), make(chan struct{})
	p.backend.mu.Lock()
	p.backend.block, p.backend.entered = block, entered
	p.backend.mu.Unlock()
	ctx, cancel := context.WithCancel(p.ctx)
	created := make(chan error, 1)
	go func() {
		_, err := p.svc.Create(ctx, &taskv3.CreateTaskRequest{ID: "c1", Bundle: p.bundle("c1", oci.WithProcessArgs("/bin/true")),
			Rootfs: []*types.Mount{{Type: "ext4", Source: p.rootfs, Options: []string{"loop", "rw"}}}})
		created <- err
	}()
	<-entered
	cancel()
	select {
	case err := <-created:
		t.Fatalf("Create returned (%v) while the backend was still creating the task", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(block)
	if err := <-created; !errors.Is(err, context.Canceled) {
		t.Fatalf("Create error = %v, want the caller's cancellation", err)
	}
	if left := p.backend.tasks(); len(left) != 0 {
		t.Errorf("backend still holds tasks %q after a Create nobody received", left)
	}
	want := []string{"start ", "Create c1", "Kill c1", "Delete c1", "Shutdown c1"}
	if got := p.backend.callList(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("backend calls = %q, want %q", got, want)
	}
	if _, _, err := p.svc.get("c1"); !errdefs.IsNotFound(err) {
		t.Errorf("the shim still serves c1: %v", err)
	}
	assertNoMountsUnder(t, p.dir)
}

// writeStatsNow runs the stats writer once; it must not need any lock a
// blocked Create holds.
func (p *testPod) writeStatsNow(t *testing.T) {
	done := make(chan struct{})
	go func() { p.svc.writeStats(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Error("stats writer blocked behind Create")
	}
}

// TestExitAfterOutput: a throttled container's exit is published only
// after its last output byte reached containerd's FIFO, and holding one
// container's exit back does not hold up another container's events.
func TestExitAfterOutput(t *testing.T) {
	p := newTestPod(t, 200_000)
	stdout, front := p.frontFIFO("slow")
	if _, err := p.create("slow", stdout, oci.WithProcessArgs("/bin/true")); err != nil {
		t.Fatal(err)
	}
	if e := p.pub.next(t, 5*time.Second); e.topic != "/tasks/create" {
		t.Fatalf("first event %s, want /tasks/create", e.topic)
	}
	// Under the pipe's capacity, so nothing needs to read while it drains:
	// at the exit, every byte must already be in containerd's FIFO.
	output := bytes.Repeat([]byte("0123456789abcdef"), 40_000/16) // 0.2 s at 200 kB/s
	go p.backend.exit("slow", output)

	// Another container's events pass while "slow" drains.
	if _, err := p.create("fast", "", oci.WithProcessArgs("/bin/true")); err != nil {
		t.Fatal(err)
	}
	e := p.pub.next(t, 5*time.Second)
	if e.topic != "/tasks/create" || e.evt.(*eventstypes.TaskCreate).ContainerID != "fast" {
		t.Fatalf("event %s %+v, want fast's create before slow's exit", e.topic, e.evt)
	}
	e = p.pub.next(t, 5*time.Second)
	if e.topic != "/tasks/exit" {
		t.Fatalf("event %s, want /tasks/exit", e.topic)
	}
	got := make(chan []byte, 1)
	go func() {
		buf := make([]byte, len(output))
		n, _ := io.ReadFull(front, buf)
		got <- buf[:n]
	}()
	select {
	case b := <-got:
		if !bytes.Equal(b, output) {
			t.Errorf("containerd got %d bytes, want %d, equal", len(b), len(output))
		}
	case <-time.After(100 * time.Millisecond):
		t.Errorf("exit published before the output reached containerd's FIFO")
	}
}

// TestUpdate: a resource update is forwarded; a log policy on a pod created
// without one is refused with FailedPrecondition, and nothing is forwarded.
func TestUpdate(t *testing.T) {
	p := newTestPod(t, 0)
	if _, err := p.create("c1", "", oci.WithProcessArgs("/bin/true")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.svc.Update(p.ctx, &taskv3.UpdateTaskRequest{ID: "c1"}); err != nil {
		t.Fatalf("Update: %v", err)
	}
	_, err := p.svc.Update(p.ctx, &taskv3.UpdateTaskRequest{ID: "c1",
		Annotations: map[string]string{"logs.cci.io/policies": `[{"container":"c1","paths":["/var/log/*.log"]}]`}})
	if !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("log policy Update on a pod without one: %v, want FailedPrecondition", err)
	}
	n := 0
	for _, c := range p.backend.callList() {
		if c == "Update c1" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("backend got %d Updates, want 1", n)
	}
	if _, err := p.svc.Update(p.ctx, &taskv3.UpdateTaskRequest{ID: "nope"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Update of an unknown container: %v, want NotFound", err)
	}
}

// TestShutdownWithContainersLeft: containerd calls Shutdown after each
// delete; while containers remain, the pod keeps running.
func TestShutdownWithContainersLeft(t *testing.T) {
	p := newTestPod(t, 0)
	for _, id := range []string{"c1", "c2"} {
		if _, err := p.create(id, "", oci.WithProcessArgs("/bin/true")); err != nil {
			t.Fatal(err)
		}
	}
	p.backend.exit("c1", nil)
	if _, err := p.svc.Delete(p.ctx, &taskv3.DeleteRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.svc.Shutdown(p.ctx, &taskv3.ShutdownRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.svc.State(p.ctx, &taskv3.StateRequest{ID: "c2"}); err != nil {
		t.Errorf("State of the remaining container after Shutdown: %v", err)
	}
	for _, c := range p.backend.callList() {
		if strings.HasPrefix(c, "Shutdown") {
			t.Errorf("backend shut down with a container left")
		}
	}
	if _, err := os.Stat(p.svc.bundleDir("c1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("deleted container's bundle left: %v", err)
	}
	if _, err := os.Stat(p.svc.bundleDir("c2")); err != nil {
		t.Errorf("remaining container's bundle gone: %v", err)
	}
}

// TestEventsFlushedAtShutdown: events the backend sent just before the pod
// went away are still published.
func TestEventsFlushedAtShutdown(t *testing.T) {
	p := newTestPod(t, 0)
	if _, err := p.create("c1", "", oci.WithProcessArgs("/bin/true")); err != nil {
		t.Fatal(err)
	}
	p.backend.exit("c1", nil)
	if _, err := p.svc.Delete(p.ctx, &taskv3.DeleteRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	p.backend.event("/tasks/delete", &eventstypes.TaskDelete{ContainerID: "c1", ID: "c1"})
	if _, err := p.svc.Shutdown(p.ctx, &taskv3.ShutdownRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	p.waitShutdown(t)
	var topics []string
	for len(topics) < 3 {
		topics = append(topics, p.pub.next(t, 5*time.Second).topic)
	}
	if strings.Join(topics, " ") != "/tasks/create /tasks/exit /tasks/delete" {
		t.Errorf("published %v", topics)
	}
}

// waitShutdown waits until the teardown Shutdown started has ended the
// shim (it runs after Shutdown's reply).
func (p *testPod) waitShutdown(t *testing.T) {
	t.Helper()
	select {
	case <-p.svc.shutdown.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the shim's teardown did not end")
	}
}

func readRecords(t *testing.T, podDir string) []resource {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(podDir, resourcesFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	recs, err := replay(data)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func assertNoMountsUnder(t *testing.T, dir string) {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir) {
			t.Errorf("mount left under %s: %s", dir, f[4])
		}
	}
}
