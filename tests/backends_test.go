package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cci-shim/cci-shim/sandbox/backend"
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
	// note says how the backend differs on this host, for the test log.
	note string
}

// isGVisor reports whether the backend is gVisor.
func (b testBackend) isGVisor() bool { return b.kind == "gvisor" }

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

// gvisorBackend describes the gvisor backend on this host, or says why it
// cannot run.
func gvisorBackend() (testBackend, string) {
	runsc, err := exec.LookPath("runsc")
	if err != nil {
		return testBackend{}, "runsc is not installed (Debian package runsc; scripts/deps.sh installs it)"
	}
	out, err := exec.Command(runsc, "--version").CombinedOutput()
	if err != nil {
		return testBackend{}, "runsc --version: " + err.Error()
	}
	version, err := backend.ParseRunscVersion(string(out))
	if err != nil {
		return testBackend{}, err.Error()
	}
	b := testBackend{kind: "gvisor", nodeConfig: "backend.gvisor.runsc = \"" + runsc + "\"\n"}
	if dir := os.Getenv("CCI_E2E_RUNSC_DEBUG_DIR"); dir != "" {
		// runsc's own debug logs, one file per command, for failures.
		b.nodeConfig += "backend.gvisor.debug_log_dir = \"" + dir + "\"\n"
	}
	if version < runscNetnsFix && netCoreNamespaced() {
		// runsc before 20240731 takes any network namespace with
		// /proc/sys/net/core/rmem_default for the host's, and Linux 6.6
		// made that file per namespace: --network=sandbox then refuses
		// every pod ("cannot run with network enabled in root network
		// namespace"). Such a runsc gets loopback only.
		b.nodeConfig += "backend.gvisor.network = \"none\"\n"
		b.note = "network none: runsc " + firstLine(string(out)) + " cannot use a pod network namespace on this kernel (fixed in runsc 20240731)"
	}
	return b, ""
}

// runscNetnsFix is the runsc release whose root-netns test works on Linux
// 6.6 and later (gVisor commit 19f6b0c, issue 10704).
const runscNetnsFix = 20240731

// netCoreNamespaced reports whether net.core.rmem_default exists in a fresh
// network namespace (Linux 6.6+).
func netCoreNamespaced() bool {
	return exec.Command("unshare", "--net", "test", "-e", "/proc/sys/net/core/rmem_default").Run() == nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
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
	// e2eenv's node config starts with backend.kind = "runc", which TOML
	// does not let a later line redefine: the shims read a copy that names
	// this backend instead, through CCI_SHIM_CONFIG in containerd's
	// environment. Shims read it at start, after Start has returned.
	path := filepath.Join(t.TempDir(), "cci-shim.toml")
	env := e2eenv.Start(t, e2eenv.Options{NodeConfig: strings.Join(extraConfig, ""), CRI: cri,
		ExtraEnv: []string{e2eenv.NodeConfigEnv + "=" + path}})
	base, err := os.ReadFile(env.NodeConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	const runcLine = "backend.kind = \"runc\"\n"
	if !strings.Contains(string(base), runcLine) {
		t.Fatalf("e2eenv's node config no longer selects the backend with %q:\n%s", runcLine, base)
	}
	cfg := strings.Replace(string(base), runcLine, "backend.kind = \""+b.kind+"\"\n"+b.nodeConfig, 1)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return env
}
