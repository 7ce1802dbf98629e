package tests

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

// testBackend is a sandbox runtime the end-to-end rule tests run against:
// the same test body, the same assertions, another backend.kind. A rule that
// cannot hold on a backend fails pod creation with a message naming it, and
// the test says so for that backend.
type testBackend struct {
	// kind is the node config's backend.kind.
	kind string
	// nodeConfig holds root-level keys for the backend, placed right after
	// backend.kind in the env's node config.
	nodeConfig string
	// note says which runtime binary runs and how the backend differs on
	// this host, for the test log.
	note string
	// noNetwork: pods get loopback only, not their CNI network.
	noNetwork bool
}

// isGVisor reports whether the backend is gVisor.
func (b testBackend) isGVisor() bool { return b.kind == "gvisor" }

// fsType is the type a container's /proc/mounts shows for a host
// filesystem of type host bind-mounted into it: gVisor's kernel reaches
// every host mount (the rootfs, volumes, /dev/shm) through its gofer and
// shows it as 9p; size, contents and sharing are the host filesystem's.
func (b testBackend) fsType(host string) string {
	if b.isGVisor() {
		return "9p"
	}
	return host
}

var (
	backendsOnce sync.Once
	backendList  []testBackend
	backendsErr  string // why gvisor cannot run here; empty when it can
)

// testBackends returns runc and, where runsc is installed, gvisor. Under
// CI=true a missing runsc fails the test (scripts/deps.sh installs it).
func testBackends(t *testing.T) []testBackend {
	t.Helper()
	backendsOnce.Do(func() {
		backendList = []testBackend{{kind: "runc"}}
		g, why := gvisorBackend()
		if why != "" {
			backendsErr = why
			return
		}
		backendList = append(backendList, g)
	})
	if backendsErr != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("gvisor backend cannot run under CI=true: %s", backendsErr)
		}
		t.Logf("gvisor backend not run (CI unset, so not a failure): %s", backendsErr)
	}
	return backendList
}

// gvisorBackend describes the gvisor backend on this host (e2eenv.FindGVisor),
// or says why it cannot run.
func gvisorBackend() (testBackend, string) {
	g, err := e2eenv.FindGVisor("")
	if err != nil {
		return testBackend{}, err.Error()
	}
	return testBackend{kind: "gvisor", nodeConfig: strings.TrimPrefix(g.Backend, "backend.kind = \"gvisor\"\n"),
		note: g.Note, noNetwork: g.NoNetwork}, ""
}

// forEachBackend runs body as one subtest per backend ("runc", "gvisor"),
// each starting its own env with b.startEnv.
func forEachBackend(t *testing.T, body func(t *testing.T, b testBackend)) {
	t.Helper()
	for _, b := range testBackends(t) {
		t.Run(b.kind, func(t *testing.T) {
			if b.note != "" {
				t.Logf("backend %s: %s", b.kind, b.note)
			}
			body(t, b)
		})
	}
}

// startEnv starts an env whose cci shims run backend b with the node's
// default limits, plus extraConfig (as startEnv in helpers_test.go).
func (b testBackend) startEnv(t *testing.T, cri bool, extraConfig ...string) *e2eenv.Env {
	t.Helper()
	if b.kind == "runc" {
		return startEnv(t, cri, extraConfig...)
	}
	nodeConfig := b.nodeConfig
	if b.isGVisor() {
		// runsc's root holds node-wide state besides each sandbox's:
		// newer runsc pin a shared empty network namespace for gofers
		// there (null-netns, a mount), which outlives every pod. Outside
		// the env it is not a pod's leak; it goes after the env.
		root := filepath.Join(t.TempDir(), "runsc")
		nodeConfig += "backend.gvisor.root = \"" + root + "\"\n"
		t.Cleanup(func() { unmountUnder(t, root) })
	}
	return e2eenv.Start(t, e2eenv.Options{NodeConfig: strings.Join(extraConfig, ""), CRI: cri,
		Backend: "backend.kind = \"" + b.kind + "\"\n" + nodeConfig})
}

// unmountUnder unmounts every mount below dir (deepest first).
func unmountUnder(t *testing.T, dir string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var targets []string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			targets = append(targets, f[4])
		}
	}
	for i := len(targets) - 1; i >= 0; i-- {
		if err := unix.Unmount(targets[i], unix.MNT_DETACH); err != nil {
			t.Logf("unmounting %s: %v", targets[i], err)
		}
	}
}
