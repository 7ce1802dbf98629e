package tests

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// counterScript prints lines "line 1" .. "line n", one every 20 ms.
func counterScript(n int) string {
	return fmt.Sprintf(`i=1; while [ $i -le %d ]; do echo "line $i"; i=$((i+1)); usleep 20000; done`, n)
}

// TestContainerdRestartMidStdout: containerd restarts (SIGTERM, and a
// SIGKILL crash) while a CRI container prints a line every 20 ms, with the
// stdout throttle on and off. The CRI log holds every line exactly once, in
// order, and the pod stays manageable (exec, stop, remove) afterwards.
func TestContainerdRestartMidStdout(t *testing.T) {
	for _, tc := range []struct {
		name     string
		throttle string
		sig      syscall.Signal
	}{
		{"throttled, SIGTERM", "", syscall.SIGTERM},
		{"throttled, SIGKILL", "", syscall.SIGKILL},
		{"unthrottled, SIGTERM", unthrottledStdio, syscall.SIGTERM},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := startEnv(t, true, tc.throttle)
			ctx := env.Context()
			const lines = 300 // 6 s
			pod := mustRunPod(ctx, t, env, podConfig(env, "printer", nil))
			id := pod.mustStart(ctx, t, containerConfig(env, "printer", counterScript(lines)+"; sleep 3600"))
			time.Sleep(1500 * time.Millisecond)
			if _, err := env.RestartContainerd(tc.sig, time.Second); err != nil {
				t.Fatal(err)
			}
			logPath := filepath.Join(pod.cfg.LogDirectory, "printer.log")
			if !waitFor(30*time.Second, func() bool { return strings.Contains(readFile(logPath), fmt.Sprintf("line %d\n", lines)) }) {
				t.Fatalf("the last line never reached the CRI log; tail:\n%s", tail(readFile(logPath), 5))
			}
			assertEveryLineOnce(t, logPath, lines)
			// Manageable after the restart.
			if out := pod.exec(ctx, t, id, "echo alive"); out != "alive\n" {
				t.Errorf("exec after restart: %q", out)
			}
			pod.remove(ctx, t)
			assertClean(t, env)
		})
	}
}

// assertEveryLineOnce reads a CRI log (RFC 3339 time, stream, tag, text)
// and checks that it holds "line 1" .. "line n", each once, in order.
func assertEveryLineOnce(t *testing.T, path string, n int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	next, bad := 1, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.SplitN(sc.Text(), " ", 4)
		if len(fields) != 4 || !strings.HasPrefix(fields[3], "line ") {
			continue
		}
		got, _ := strconv.Atoi(strings.TrimPrefix(fields[3], "line "))
		if got != next {
			if bad < 5 {
				t.Errorf("CRI log: got line %d, want line %d (lost or repeated)", got, next)
			}
			bad++
			next = got
		}
		next++
	}
	if next != n+1 {
		t.Errorf("CRI log ends at line %d, want %d", next-1, n)
	}
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// TestContainerdRestartDuringCreateAndDelete: containerd restarts while a
// pod's containers are being created and deleted. Afterwards the pod is
// either manageable or cleanly gone, and nothing leaks.
func TestContainerdRestartDuringCreateAndDelete(t *testing.T) {
	env := startEnv(t, true)
	ctx := env.Context()
	rs, _ := env.CRI()
	pod := mustRunPod(ctx, t, env, podConfig(env, "churn", nil))

	// During Create: the CreateContainer/StartContainer calls in flight
	// fail or succeed; either way the pod must be consistent afterwards.
	started := make(chan error, 1)
	go func() {
		_, err := pod.start(ctx, sleeper(env, "during-create"))
		started <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if _, err := env.RestartContainerd(syscall.SIGKILL, 500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	t.Logf("start during the restart: %v", <-started)
	id := pod.mustStart(ctx, t, sleeper(env, "after-restart"))
	if out := pod.exec(ctx, t, id, "echo ok"); out != "ok\n" {
		t.Errorf("exec after restart: %q", out)
	}

	// During Delete.
	if _, err := rs.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 1}); err != nil {
		t.Fatal(err)
	}
	removed := make(chan error, 1)
	go func() {
		_, err := rs.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id})
		removed <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if _, err := env.RestartContainerd(syscall.SIGKILL, 500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	t.Logf("remove during the restart: %v", <-removed)
	pod.remove(ctx, t)
	assertClean(t, env)
}

// TestRestartedEnvStillServesCtr: after a containerd restart, a task run
// with ctr before it can still be exec'ed into, killed and deleted.
func TestRestartedEnvStillServesCtr(t *testing.T) {
	env := startEnv(t, false)
	if _, errOut, err := env.CtrRun("-d", "--runtime", cciRuntime, env.Image, "survivor", "sh", "-c", "while :; do sleep 1; done"); err != nil {
		t.Fatalf("run: %v: %s", err, errOut)
	}
	if _, err := env.RestartContainerd(syscall.SIGTERM, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := env.Ctr("task", "exec", "--exec-id", "e1", "survivor", "echo", "hello")
	if err != nil || out != "hello\n" {
		t.Errorf("exec after restart: %q %q %v", out, errOut, err)
	}
	if _, errOut, err := env.Ctr("task", "kill", "-s", "SIGKILL", "survivor"); err != nil {
		t.Errorf("kill after restart: %v %s", err, errOut)
	}
	waitFor(10*time.Second, func() bool { out, _, _ := env.Ctr("task", "ls"); return strings.Contains(out, "STOPPED") })
	if _, errOut, err := env.Ctr("task", "rm", "survivor"); err != nil {
		t.Errorf("task rm after restart: %v %s", err, errOut)
	}
	env.Ctr("container", "rm", "survivor")
	assertNoLeaks(t, env)
	assertNoPodState(t, env)
}
