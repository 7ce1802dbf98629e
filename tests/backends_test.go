package tests

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

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

// gvisorBackend describes the gvisor backend on this host, or says why it
// cannot run. The runsc it uses is $CCI_E2E_RUNSC, else the tools dir's
// (scripts/deps.sh builds one there where Debian's is too old for the
// kernel), else the one in PATH.
func gvisorBackend() (testBackend, string) {
	runsc, err := findRunsc()
	if err != nil {
		return testBackend{}, err.Error()
	}
	version, err := backend.RunscVersion(runsc)
	if err != nil {
		return testBackend{}, err.Error()
	}
	b := testBackend{kind: "gvisor", nodeConfig: "backend.gvisor.runsc = \"" + runsc + "\"\n"}
	if dir := os.Getenv("CCI_E2E_RUNSC_DEBUG_DIR"); dir != "" {
		// runsc's own debug logs, one file per command, for failures.
		b.nodeConfig += "backend.gvisor.debug_log_dir = \"" + dir + "\"\n"
	}
	b.note = fmt.Sprintf("%s (release %d)", runsc, version)
	if version >= runscSystrap {
		// systrap, gVisor's default platform since 2023, traps system
		// calls several times faster than ptrace.
		b.nodeConfig += "backend.gvisor.platform = \"systrap\"\n"
		b.note += ", platform systrap"
	}
	if version < runscNetnsFix && netCoreNamespaced() {
		// runsc before 20240731 takes any network namespace with
		// /proc/sys/net/core/rmem_default for the host's, and Linux 6.6
		// made that file per namespace: --network=sandbox then refuses
		// every pod ("cannot run with network enabled in root network
		// namespace"). Such a runsc gets loopback only.
		b.nodeConfig += "backend.gvisor.network = \"none\"\n"
		b.noNetwork = true
		b.note += "; network none: this runsc cannot use a pod network namespace on this kernel (fixed in runsc 20240731)"
	}
	return b, ""
}

// findRunsc returns the runsc the gvisor tests use.
func findRunsc() (string, error) {
	if p := os.Getenv("CCI_E2E_RUNSC"); p != "" {
		return exec.LookPath(p)
	}
	for _, dir := range []string{os.Getenv("CCI_TOOLS_DIR"), "../.tools/bin"} {
		if p := filepath.Join(dir, "runsc"); dir != "" {
			if abs, err := filepath.Abs(p); err == nil && isExecutableFile(abs) {
				return abs, nil
			}
		}
	}
	p, err := exec.LookPath("runsc")
	if err != nil {
		return "", errors.New("runsc is not installed (Debian package runsc; scripts/deps.sh installs it)")
	}
	return p, nil
}

func isExecutableFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// runscSystrap is the first runsc release with the systrap platform.
const runscSystrap = 20230223

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
	dir := t.TempDir()
	path := filepath.Join(dir, "cci-shim.toml")
	nodeConfig := b.nodeConfig
	if b.isGVisor() {
		// runsc's root holds node-wide state besides each sandbox's:
		// newer runsc pin a shared empty network namespace for gofers
		// there (null-netns, a mount), which outlives every pod. Outside
		// the env it is not a pod's leak; it goes after the env.
		root := filepath.Join(dir, "runsc")
		nodeConfig += "backend.gvisor.root = \"" + root + "\"\n"
		t.Cleanup(func() { unmountUnder(t, root) })
	}
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
	cfg := strings.Replace(string(base), runcLine, "backend.kind = \""+b.kind+"\"\n"+nodeConfig, 1)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return env
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
