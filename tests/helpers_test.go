// Package tests holds cci-shim's end-to-end tests: a real containerd v2, real
// runc, real loop devices and cgroups, driven through ctr and the CRI API the
// way crictl and kubelet drive it. tests/e2eenv builds the environment.
package tests

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cci-shim/cci-shim/logfwd"
	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

// cciRuntime is the runtime type containerd maps to containerd-shim-cci-v2.
const cciRuntime = "io.containerd.cci.v2"

// unthrottledStdio turns the stdout throttle off, for tests of other rules
// that move a lot of output.
const unthrottledStdio = "[throttle]\nstdio_bps = 0\n"

// noBurst turns the rootfs start burst off, for tests that measure R8 or
// read the limits from the first byte.
const noBurst = "throttle.rootfs_burst_bytes = 0\n"

// startEnv starts an env whose cci shims run the runc backend with the node's
// default limits (e2eenv pins their paths into the env), plus extraConfig.
func startEnv(t *testing.T, cri bool, extraConfig ...string) *e2eenv.Env {
	t.Helper()
	return e2eenv.Start(t, e2eenv.Options{NodeConfig: strings.Join(extraConfig, ""), CRI: cri})
}

// exitCode returns the exit status ctr reported through err (0 for nil).
func exitCode(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("ctr did not run: %v", err)
	}
	return ee.ExitCode()
}

// podUID is e2eenv.PodUID: a UUID derived from the pod's name.
func podUID(name string) string { return e2eenv.PodUID(name) }

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// assertNoLeaks fails when the env has processes, mounts, loop devices or
// sockets left from the scenario.
func assertNoLeaks(t *testing.T, env *e2eenv.Env) {
	t.Helper()
	var leaks []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		leaks = env.Leaks()
		if len(leaks) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(leaks) > 0 {
		t.Errorf("left behind:\n  %s", strings.Join(leaks, "\n  "))
	}
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// sinkName is the file sink of a CRI pod: named by containerd namespace and
// sandbox id, never by the tenant's names.
func sinkName(t *testing.T, sandboxID string) string {
	t.Helper()
	name, err := logfwd.SinkFileName(e2eenv.CRINamespace, sandboxID)
	if err != nil {
		t.Fatal(err)
	}
	return name
}
