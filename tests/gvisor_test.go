package tests

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

// gvisorBackendOrSkip returns the gvisor backend, failing under CI=true when
// it cannot run here and skipping otherwise.
func gvisorBackendOrSkip(t *testing.T) testBackend {
	t.Helper()
	for _, b := range testBackends(t) {
		if b.isGVisor() {
			if b.note != "" {
				t.Logf("backend gvisor: %s", b.note)
			}
			return b
		}
	}
	t.Skipf("gvisor backend unavailable and CI unset: %s", backendsErr)
	return testBackend{}
}

// TestGVisorCRIPod: a two-container CRI pod runs in one gVisor sandbox (R1):
// one runsc-sandbox process for the pod, both containers see gVisor's
// kernel, ExecSync works, a container that exits is seen to exit while its
// sibling runs on, and nothing is left after the pod is removed.
func TestGVisorCRIPod(t *testing.T) {
	b := gvisorBackendOrSkip(t)
	env := b.startEnv(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	p := mustRunPod(ctx, t, env, podConfig(env, "gvisor-pod", nil))
	app := p.mustStart(ctx, t, sleeper(env, "app"))
	side := p.mustStart(ctx, t, sleeper(env, "sidecar"))
	for _, id := range []string{app, side} {
		if out := p.exec(ctx, t, id, "dmesg | head -1"); !strings.Contains(out, "Starting gVisor") {
			t.Errorf("container %s does not run on gVisor's kernel: dmesg says %q", id, out)
		}
	}
	sandboxes := runscProcs(env, "runsc-sandbox")
	if len(sandboxes) != 1 {
		t.Errorf("runsc-sandbox processes for one pod: %v, want exactly one", sandboxes)
	}
	// Both containers share the sandbox's kernel: a file in the pod's
	// /dev/shm written by one is read by the other.
	p.exec(ctx, t, app, "echo shared > /dev/shm/x")
	if out := p.exec(ctx, t, side, "cat /dev/shm/x"); out != "shared\n" {
		t.Errorf("sidecar reads %q from the pod's /dev/shm", out)
	}

	// A container that exits on its own is seen to exit, with its status.
	quitter := p.mustStart(ctx, t, containerConfig(env, "quitter", "echo bye; exit 7"))
	var st *runtimeapi.ContainerStatusResponse
	exited := waitFor(30*time.Second, func() bool {
		var err error
		st, err = p.rs.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: quitter})
		return err == nil && st.Status.State == runtimeapi.ContainerState_CONTAINER_EXITED
	})
	if !exited {
		t.Errorf("a container that exited is not seen as exited after 30 s: %v", st.GetStatus())
	} else if st.Status.ExitCode != 7 {
		t.Errorf("exit code %d, want 7", st.Status.ExitCode)
	}
	if out := p.exec(ctx, t, app, "echo still-here"); out != "still-here\n" {
		t.Errorf("sibling after the exit: %q", out)
	}
	p.remove(ctx, t)
	assertClean(t, env)
}

// runscProcs returns the pids of the env's runsc processes called name
// (runsc-sandbox, runsc-gofer: their argv[0]) whose command line names the
// env.
func runscProcs(env *e2eenv.Env, name string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		argv0, _, _ := strings.Cut(string(cmd), "\x00")
		if err != nil || argv0 != name {
			continue
		}
		if strings.Contains(string(cmd), env.Dir) {
			var pid int
			for _, ch := range e.Name() {
				pid = pid*10 + int(ch-'0')
			}
			pids = append(pids, pid)
		}
	}
	return pids
}
