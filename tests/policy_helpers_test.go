package tests

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

// Helpers of the policy tests (policy_test.go, policy_arch_test.go).

// startPolicyEnv starts a CRI env on backend b; its kubelet root dir is
// inside the env ({{Dir}}/kubelet), so that tests can lay out kubelet's
// volume dirs.
func startPolicyEnv(t *testing.T, b testBackend) *e2eenv.Env {
	t.Helper()
	return b.startEnv(t, true)
}

// criPod is a pod sandbox run through CRI.
type criPod struct {
	env *e2eenv.Env
	rs  runtimeapi.RuntimeServiceClient
	cfg *runtimeapi.PodSandboxConfig
	id  string
}

// podConfig is a pod sandbox config as kubelet would send it, with the
// given pod annotations.
func podConfig(env *e2eenv.Env, name string, annotations map[string]string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: podUID(name)},
		LogDirectory: filepath.Join(env.Dir, "pod-logs", name),
		Annotations:  annotations,
		Linux:        &runtimeapi.LinuxPodSandboxConfig{},
	}
}

// runPod runs a sandbox with the cci handler.
func runPod(ctx context.Context, env *e2eenv.Env, cfg *runtimeapi.PodSandboxConfig) (*criPod, error) {
	rs, _ := env.CRI()
	r, err := rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: criHandler})
	if err != nil {
		return nil, err
	}
	return &criPod{env: env, rs: rs, cfg: cfg, id: r.PodSandboxId}, nil
}

func mustRunPod(ctx context.Context, t *testing.T, env *e2eenv.Env, cfg *runtimeapi.PodSandboxConfig) *criPod {
	t.Helper()
	p, err := runPod(ctx, env, cfg)
	if err != nil {
		t.Fatalf("RunPodSandbox %s: %v", cfg.Metadata.Name, err)
	}
	return p
}

// containerConfig runs script with sh in the busybox image.
func containerConfig(env *e2eenv.Env, name, script string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: env.Image},
		Command:  []string{"sh", "-c", script},
		LogPath:  name + ".log",
		Linux:    &runtimeapi.LinuxContainerConfig{},
	}
}

// sleeper is a container that stays up for exec.
func sleeper(env *e2eenv.Env, name string) *runtimeapi.ContainerConfig {
	return containerConfig(env, name, "while :; do sleep 1; done")
}

// start creates and starts a container. CRI creates the task (and so calls
// the shim's Create) in StartContainer: policy refusals of app containers
// surface there. id is set once CreateContainer succeeded.
func (p *criPod) start(ctx context.Context, cc *runtimeapi.ContainerConfig) (id string, err error) {
	cr, err := p.rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: cc, SandboxConfig: p.cfg})
	if err != nil {
		return "", err
	}
	_, err = p.rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId})
	return cr.ContainerId, err
}

func (p *criPod) mustStart(ctx context.Context, t *testing.T, cc *runtimeapi.ContainerConfig) string {
	t.Helper()
	id, err := p.start(ctx, cc)
	if err != nil {
		t.Fatalf("starting container %s: %v", cc.Metadata.Name, err)
	}
	return id
}

// exec runs script in container id and returns stdout; a non-zero exit fails
// the test.
func (p *criPod) exec(ctx context.Context, t *testing.T, id, script string) string {
	t.Helper()
	r, err := p.rs.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"sh", "-c", script}, Timeout: 30})
	if err != nil {
		t.Fatalf("ExecSync %q: %v", script, err)
	}
	if r.ExitCode != 0 {
		t.Fatalf("ExecSync %q: exit %d, stdout %q, stderr %q", script, r.ExitCode, r.Stdout, r.Stderr)
	}
	return string(r.Stdout)
}

// remove stops and removes the sandbox and its containers.
func (p *criPod) remove(ctx context.Context, t *testing.T) {
	t.Helper()
	if _, err := p.rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.id}); err != nil {
		t.Errorf("StopPodSandbox: %v", err)
	}
	if _, err := p.rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.id}); err != nil {
		t.Errorf("RemovePodSandbox: %v", err)
	}
}

// wantRefused checks that err is a refusal whose message holds every text,
// and logs the message the tenant sees.
func wantRefused(t *testing.T, call string, err error, texts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s succeeded, want a refusal with %q", call, texts)
	}
	st := status.Convert(err)
	for _, s := range texts {
		if !strings.Contains(st.Message(), s) {
			t.Errorf("%s error does not say %q:\n%s", call, s, st.Message())
		}
	}
	t.Logf("tenant sees (%s, %s): %s", call, st.Code(), st.Message())
}

// assertClean checks that nothing of the scenario is left: processes,
// mounts, loop devices, sockets (assertNoLeaks), the shim's pod state and
// the pods' volume dirs, in the ctr and the CRI namespace.
func assertClean(t *testing.T, env *e2eenv.Env) {
	t.Helper()
	assertNoLeaks(t, env)
	var dirs []string
	for _, ns := range []string{env.Namespace, e2eenv.CRINamespace} {
		dirs = append(dirs, filepath.Join(env.StateDir, ns), filepath.Join(env.Dir, "volumes", ns))
	}
	left := func() []string {
		var names []string
		for _, d := range dirs {
			e, _ := os.ReadDir(d)
			for _, x := range e {
				names = append(names, filepath.Join(d, x.Name()))
			}
		}
		return names
	}
	if !waitFor(5*time.Second, func() bool { return len(left()) == 0 }) {
		t.Errorf("pod state or volumes left: %v", left())
	}
}

// ctrError returns ctr's stderr without the warnings containerd's client
// logs first.
func ctrError(stderr string) string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if !strings.Contains(l, "level=warning") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// dfKiB returns the size column (1K-blocks) of `df -k path` output.
func dfKiB(t *testing.T, out string) int64 {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	f := strings.Fields(lines[len(lines)-1])
	if len(f) < 2 {
		t.Fatalf("cannot read df output:\n%s", out)
	}
	n, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		t.Fatalf("cannot read df output:\n%s", out)
	}
	return n
}
