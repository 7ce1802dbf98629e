package tests

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

// TestFailurePaths: each failure gives a clear error or a clean exit status
// in containerd and leaves no process, mount, loop device or socket behind.
func TestFailurePaths(t *testing.T) {
	env := startEnv(t, false)

	t.Run("missing backend binary", func(t *testing.T) {
		if err := env.SetNodeConfig("backend.binary = \"containerd-shim-missing-v2\"\n"); err != nil {
			t.Fatal(err)
		}
		defer env.SetNodeConfig("")
		_, errOut, err := env.CtrRun("--rm", "--runtime", cciRuntime, env.Image, "nobackend", "true")
		if err == nil {
			t.Fatal("ctr run succeeded without a backend")
		}
		if !strings.Contains(errOut, "backend shim binary not found") || !strings.Contains(errOut, "containerd-shim-missing-v2") {
			t.Errorf("error does not name the missing backend:\n%s", errOut)
		}
		env.Ctr("container", "rm", "nobackend")
		assertNoLeaks(t, env)
		assertNoPodState(t, env)
	})

	t.Run("bad bundle", func(t *testing.T) {
		_, errOut, err := env.CtrRun("--rm", "--runtime", cciRuntime, env.Image, "badbundle", "/no/such/binary")
		if err == nil {
			t.Fatal("ctr run of a missing binary succeeded")
		}
		if !strings.Contains(errOut, "/no/such/binary") {
			t.Errorf("error does not name the problem:\n%s", errOut)
		}
		env.Ctr("container", "rm", "badbundle")
		assertNoLeaks(t, env)
		assertNoPodState(t, env)
	})

	// The runc backend runs in the cci shim's process: killing that shim
	// kills both. (A backend shim in a process of its own, Kata's, dying is
	// shim/kata_contract_test.go's TestKataBackendDies.)
	for _, victim := range []string{e2eenv.CCIShimBinary} {
		t.Run("SIGKILL of "+victim+" with a running container", func(t *testing.T) {
			id := "victim-" + strconv.Itoa(len(victim))
			if _, errOut, err := env.CtrRun("-d", "--runtime", cciRuntime, env.Image, id, "sh", "-c", "while :; do sleep 1; done"); err != nil {
				t.Fatalf("run -d: %v: %s", err, errOut)
			}
			initPid := taskPid(t, env, id)
			pids := env.ShimPIDs(victim)
			if len(pids) != 1 {
				t.Fatalf("%s processes: %v, want 1", victim, pids)
			}
			syscall.Kill(pids[0], syscall.SIGKILL)
			// containerd notices the dead shim and cleans up through our
			// delete subcommand: the task stops, the container dies.
			if !waitFor(20*time.Second, func() bool {
				out, _, _ := env.Ctr("task", "ls")
				return !strings.Contains(out, id) || strings.Contains(out, "STOPPED")
			}) {
				out, _, _ := env.Ctr("task", "ls")
				t.Errorf("task still listed as live 20 s after the kill:\n%s", out)
			}
			if !waitFor(10*time.Second, func() bool { return syscall.Kill(initPid, 0) == syscall.ESRCH }) {
				t.Errorf("container init %d survived the shim kill", initPid)
			}
			env.Ctr("task", "rm", "-f", id)
			env.Ctr("container", "rm", id)
			assertNoLeaks(t, env)
			assertNoPodState(t, env)
		})
	}
}

// taskPid returns the pid ctr task ls reports for id.
func taskPid(t *testing.T, env *e2eenv.Env, id string) int {
	t.Helper()
	out, _, err := env.Ctr("task", "ls")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == id {
			pid, _ := strconv.Atoi(f[1])
			return pid
		}
	}
	t.Fatalf("task %s not listed:\n%s", id, out)
	return 0
}

// assertNoPodState fails when the cci state dir or volume dir still holds
// a pod.
func assertNoPodState(t *testing.T, env *e2eenv.Env) {
	t.Helper()
	for _, dir := range []string{filepath.Join(env.StateDir, env.Namespace), filepath.Join(env.Dir, "volumes", env.Namespace)} {
		if !waitFor(5*time.Second, func() bool { e, _ := os.ReadDir(dir); return len(e) == 0 }) {
			e, _ := os.ReadDir(dir)
			var names []string
			for _, x := range e {
				names = append(names, x.Name())
			}
			t.Errorf("pod state left in %s: %v", dir, names)
		}
	}
}

// createSteps are the shim's Create steps, in order (shim/create.go's
// failpoints): a SIGKILL of the cci shim after each must leave nothing.
var createSteps = []string{"admitted", "volumes", "gpus", "rootfs", "bundle", "stdio", "backend", "task"}

// TestShimKilledAtEachCreateStep: the cci shim dies (SIGKILL) right after
// each step of Create, for a pod with a log policy and throttled stdio.
// containerd's delete subcommand then releases everything the owner had
// recorded: no process, mount, loop device, FIFO, socket or state is left,
// and the next pod runs.
func TestShimKilledAtEachCreateStep(t *testing.T) {
	var fps []string
	for _, s := range createSteps {
		fps = append(fps, "create:"+s+"@fp-"+s)
	}
	env := e2eenv.Start(t, e2eenv.Options{ExtraEnv: []string{"CCI_SHIM_TEST_FAILPOINTS=" + strings.Join(fps, ",")}})
	for _, step := range createSteps {
		t.Run(step, func(t *testing.T) {
			id := "fp-" + step
			_, errOut, err := env.CtrRun("--rm", "--runtime", cciRuntime,
				"--annotation", "logs.cci.io/policies="+`[{"container":"`+id+`","paths":["/var/log/app/*.log"]}]`,
				env.Image, id, "true")
			if err == nil {
				t.Fatalf("ctr run succeeded through a shim killed at %s", step)
			}
			t.Logf("ctr run: %s", strings.TrimSpace(errOut))
			env.Ctr("task", "rm", "-f", id)
			env.Ctr("container", "rm", id)
			assertNoLeaks(t, env)
			assertNoPodState(t, env)
		})
	}
	// The node still runs pods.
	if _, errOut, err := env.CtrRun("--rm", "--runtime", cciRuntime, env.Image, "after", "true"); err != nil {
		t.Fatalf("ctr run after the kills: %v: %s", err, errOut)
	}
	assertNoLeaks(t, env)
}
