package tests

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

// Helpers of the attack suite (attack_*_test.go): a tenant of the
// containerd API (the Go client, which can put anything into a spec),
// kubelet's pod directory laid out as kubelet lays it out, and the host
// objects an attack aims at.

// insecureHostRootCaps is the development option that lets host-root
// capabilities through on runc (R25). Tests that need CAP_SYS_ADMIN on runc
// set it; gVisor is where such capabilities are tested for real.
const insecureHostRootCaps = "policy.insecure_allow_host_root_capabilities = true\n"

// apiTask is a container created through containerd's Go client, as a
// tenant with access to the containerd API (ctr, nerdctl, a virtual
// kubelet) creates it: whatever the spec options say reaches the shim.
type apiTask struct {
	env  *e2eenv.Env
	ctx  context.Context
	ctr  client.Container
	task client.Task
	out  *syncBuffer
}

// syncBuffer is a bytes.Buffer safe for the client's copy goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// apiCreate creates container id in containerd namespace ns from the test
// image with the cci runtime, the image's config and then opts, and
// creates its task (the shim's Create). On error it removes what it made
// and returns the error containerd returned; on success the task is
// created, not started, and removed at the end of the test.
func apiCreate(t *testing.T, env *e2eenv.Env, ns, id string, opts ...oci.SpecOpts) (*apiTask, error) {
	t.Helper()
	return apiCreateWith(t, env, ns, id, nil, opts...)
}

// apiCreateWith is apiCreate with task options (e.g. client.WithRootFS).
func apiCreateWith(t *testing.T, env *e2eenv.Env, ns, id string, taskOpts []client.NewTaskOpts, opts ...oci.SpecOpts) (*apiTask, error) {
	t.Helper()
	c := env.Client()
	ctx := namespaces.WithNamespace(env.Context(), ns)
	img, err := c.GetImage(ctx, env.Image)
	if err != nil {
		t.Fatalf("image %s in %s: %v", env.Image, ns, err)
	}
	specOpts := append([]oci.SpecOpts{oci.WithImageConfig(img)}, opts...)
	ctr, err := c.NewContainer(ctx, id,
		client.WithImage(img),
		client.WithNewSnapshot(id+"-snap", img),
		client.WithRuntime(cciRuntime, nil),
		client.WithNewSpec(specOpts...))
	if err != nil {
		t.Fatalf("creating container %s/%s: %v", ns, id, err)
	}
	a := &apiTask{env: env, ctx: ctx, ctr: ctr, out: &syncBuffer{}}
	task, err := ctr.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, a.out, a.out)), taskOpts...)
	if err != nil {
		if derr := ctr.Delete(ctx, client.WithSnapshotCleanup); derr != nil {
			t.Errorf("removing container %s/%s: %v", ns, id, derr)
		}
		return nil, err
	}
	a.task = task
	t.Cleanup(a.remove)
	return a, nil
}

// apiRefused runs apiCreate and wants it refused with every text.
func apiRefused(t *testing.T, env *e2eenv.Env, ns, id string, texts []string, opts ...oci.SpecOpts) {
	t.Helper()
	a, err := apiCreate(t, env, ns, id, opts...)
	if err == nil {
		a.remove()
	}
	wantRefused(t, "containerd API NewTask", err, texts...)
}

// start starts the task and, for a process that exits, waits for it and
// returns its output.
func (a *apiTask) start(t *testing.T) {
	t.Helper()
	if err := a.task.Start(a.ctx); err != nil {
		t.Fatalf("starting task %s: %v", a.ctr.ID(), err)
	}
}

// run starts the task, waits for its exit and returns its output and
// status.
func (a *apiTask) run(t *testing.T) (string, uint32) {
	t.Helper()
	ch, err := a.task.Wait(a.ctx)
	if err != nil {
		t.Fatal(err)
	}
	a.start(t)
	select {
	case st := <-ch:
		return a.out.String(), st.ExitCode()
	case <-time.After(time.Minute):
		t.Fatalf("task %s did not exit", a.ctr.ID())
	}
	return "", 0
}

// exec runs args in the task with the container's process spec changed by
// mut, and returns the error of the Exec call (the shim's check) or the
// process's output and status.
func (a *apiTask) exec(t *testing.T, execID string, args []string, mut func(*specs.Process)) (string, uint32, error) {
	t.Helper()
	spec, err := a.ctr.Spec(a.ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := *spec.Process
	p.Args, p.Terminal = args, false
	if mut != nil {
		mut(&p)
	}
	out := &syncBuffer{}
	proc, err := a.task.Exec(a.ctx, execID, &p, cio.NewCreator(cio.WithStreams(nil, out, out)))
	if err != nil {
		return "", 0, err
	}
	defer proc.Delete(context.WithoutCancel(a.ctx))
	ch, err := proc.Wait(a.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := proc.Start(a.ctx); err != nil {
		return "", 0, err
	}
	select {
	case st := <-ch:
		return out.String(), st.ExitCode(), nil
	case <-time.After(time.Minute):
		t.Fatalf("exec %s in %s did not exit", execID, a.ctr.ID())
	}
	return "", 0, nil
}

// remove kills and deletes the task and deletes the container and its
// snapshot. Safe to call twice.
func (a *apiTask) remove() {
	ctx := context.WithoutCancel(a.ctx)
	if a.task != nil {
		if st, err := a.task.Status(ctx); err == nil && st.Status == client.Running {
			ch, werr := a.task.Wait(ctx)
			if err := a.task.Kill(ctx, syscall.SIGKILL); err == nil && werr == nil {
				select {
				case <-ch:
				case <-time.After(20 * time.Second):
				}
			}
		}
		a.task.Delete(ctx, client.WithProcessKill)
		a.task = nil
	}
	if a.ctr != nil {
		a.ctr.Delete(ctx, client.WithSnapshotCleanup)
		a.ctr = nil
	}
}

// withSpec is a spec option from a plain function.
func withSpec(f func(*specs.Spec)) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		f(s)
		return nil
	}
}

// kubeletPod lays out a pod's directory under the env's kubelet root the
// way kubelet does before it asks CRI for the pod's containers.
type kubeletPod struct {
	t      *testing.T
	dir    string // <kubelet root>/pods/<uid>
	mounts []string
}

func newKubeletPod(t *testing.T, env *e2eenv.Env, uid string) *kubeletPod {
	t.Helper()
	k := &kubeletPod{t: t, dir: filepath.Join(env.Dir, "kubelet", "pods", uid)}
	if err := os.MkdirAll(filepath.Join(k.dir, "volumes"), 0o750); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.unmount)
	return k
}

// emptyDir is a disk emptyDir volume (kubelet makes it 0777).
func (k *kubeletPod) emptyDir(name string) string {
	d := filepath.Join(k.dir, "volumes", "kubernetes.io~empty-dir", name)
	if err := os.MkdirAll(d, 0o777); err != nil {
		k.t.Fatal(err)
	}
	if err := os.Chmod(d, 0o777); err != nil {
		k.t.Fatal(err)
	}
	return d
}

// atomicVolume is a configmap, secret or projected volume as kubelet's
// atomic writer leaves it: the files in a timestamped directory, ..data a
// symlink to it, and each key a symlink through ..data. Secret and
// projected volumes are a tmpfs (kubelet mounts one there).
func (k *kubeletPod) atomicVolume(kind, name string, files map[string]string) string {
	d := filepath.Join(k.dir, "volumes", "kubernetes.io~"+kind, name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		k.t.Fatal(err)
	}
	if kind == "secret" || kind == "projected" {
		if err := unix.Mount("tmpfs", d, "tmpfs", 0, "size=1m,mode=0755"); err != nil {
			k.t.Fatal(err)
		}
		k.mounts = append(k.mounts, d)
	}
	ts := "..2026_11_30_12_00_00.000000001"
	if err := os.Mkdir(filepath.Join(d, ts), 0o755); err != nil {
		k.t.Fatal(err)
	}
	for f, content := range files {
		if err := os.WriteFile(filepath.Join(d, ts, f), []byte(content), 0o644); err != nil {
			k.t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(d, f)); err != nil {
			k.t.Fatal(err)
		}
	}
	if err := os.Symlink(ts, filepath.Join(d, "..data")); err != nil {
		k.t.Fatal(err)
	}
	return d
}

// terminationLog is the file kubelet mounts at /dev/termination-log.
func (k *kubeletPod) terminationLog(container string) string {
	d := filepath.Join(k.dir, "containers", container)
	if err := os.MkdirAll(d, 0o750); err != nil {
		k.t.Fatal(err)
	}
	f := filepath.Join(d, "3f9a1c2e")
	if err := os.WriteFile(f, nil, 0o666); err != nil {
		k.t.Fatal(err)
	}
	return f
}

// etcHosts is kubelet's managed /etc/hosts of the pod.
func (k *kubeletPod) etcHosts(content string) string {
	f := filepath.Join(k.dir, "etc-hosts")
	if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
		k.t.Fatal(err)
	}
	return f
}

// unmount detaches the tmpfs mounts the layout made (before assertClean,
// which counts every mount under the env's dir).
func (k *kubeletPod) unmount() {
	for _, m := range k.mounts {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && err != unix.EINVAL {
			k.t.Errorf("unmounting %s: %v", m, err)
		}
	}
	k.mounts = nil
}

// envLoopDevice is the loop device behind the env's XFS: the one that holds
// the scratch file of every pod's rootfs, the device a tenant most wants.
func envLoopDevice(t *testing.T, env *e2eenv.Env) (path string, major, minor uint32) {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := filepath.Join(env.Dir, "xfs")
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[4] != want {
			continue
		}
		for i, x := range fields {
			if x == "-" && i+2 < len(fields) {
				path = fields[i+2]
			}
		}
	}
	var st unix.Stat_t
	if path == "" || unix.Stat(path, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		t.Fatalf("no block device mounted at %s (%q)", want, path)
	}
	return path, unix.Major(st.Rdev), unix.Minor(st.Rdev)
}

// hostCgroup is the host cgroup path of pid for a v1 controller (or the v2
// path).
func hostCgroup(t *testing.T, pid int, controller string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == controller || parts[0] == "0" && controller == "" {
				return parts[2]
			}
		}
	}
	t.Fatalf("pid %d has no %s cgroup:\n%s", pid, controller, b)
	return ""
}

// runPodT is mustRunPod, and removes the pod when the (sub)test ends if
// the test did not, so that a failure does not leave it to the next
// subtest's leak check.
func runPodT(ctx context.Context, t *testing.T, env *e2eenv.Env, cfg *runtimeapi.PodSandboxConfig) *criPod {
	t.Helper()
	p := mustRunPod(ctx, t, env, cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// Errors are expected: the test removed the pod already.
		p.rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.id})
		p.rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.id})
	})
	return p
}
