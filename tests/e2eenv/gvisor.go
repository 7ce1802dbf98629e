//go:build linux

package e2eenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/cci-shim/cci-shim/sandbox/backend"
)

// GVisor is the gvisor backend as this host can run it: the node config lines that select it
// (Options.Backend) and what differs here.
type GVisor struct {
	// Backend is Options.Backend for it: backend.kind and the backend.gvisor keys.
	Backend string
	// Runsc is the runsc binary and Release its release (YYYYMMDD).
	Runsc   string
	Release int
	// Note says which runsc runs and how, for logs.
	Note string
	// NoNetwork: this runsc cannot use a pod's network namespace on this kernel; pods get
	// loopback only.
	NoNetwork bool
}

// runscSystrap is the first runsc release with the systrap platform.
const runscSystrap = 20230223

// runscNetnsFix is the runsc release whose root-netns test works on Linux 6.6 and later
// (gVisor commit 19f6b0c, issue 10704).
const runscNetnsFix = 20240731

// FindGVisor describes the gvisor backend on this host, or says why it cannot run. The runsc it
// uses is $CCI_E2E_RUNSC, else toolsDir's (scripts/deps.sh builds one there where Debian's is too
// old for the kernel), else the one in PATH. $CCI_E2E_RUNSC_DEBUG_DIR turns runsc's own debug
// logs on.
func FindGVisor(toolsDir string) (GVisor, error) {
	runsc, err := findRunsc(toolsDir)
	if err != nil {
		return GVisor{}, err
	}
	version, err := backend.RunscVersion(runsc)
	if err != nil {
		return GVisor{}, err
	}
	g := GVisor{Runsc: runsc, Release: version,
		Backend: "backend.kind = \"gvisor\"\nbackend.gvisor.runsc = \"" + runsc + "\"\n"}
	if dir := os.Getenv("CCI_E2E_RUNSC_DEBUG_DIR"); dir != "" {
		g.Backend += "backend.gvisor.debug_log_dir = \"" + dir + "\"\n"
	}
	g.Note = fmt.Sprintf("%s (release %d)", runsc, version)
	if version >= runscSystrap {
		// systrap, gVisor's default platform since 2023, traps system calls several times
		// faster than ptrace.
		g.Backend += "backend.gvisor.platform = \"systrap\"\n"
		g.Note += ", platform systrap"
	}
	if version < runscNetnsFix && netCoreNamespaced() {
		// runsc before 20240731 takes any network namespace with
		// /proc/sys/net/core/rmem_default for the host's, and Linux 6.6 made that file per
		// namespace: --network=sandbox then refuses every pod ("cannot run with network enabled
		// in root network namespace"). Such a runsc gets loopback only.
		g.Backend += "backend.gvisor.network = \"none\"\n"
		g.NoNetwork = true
		g.Note += "; network none: this runsc cannot use a pod network namespace on this kernel (fixed in runsc 20240731)"
	}
	return g, nil
}

func findRunsc(toolsDir string) (string, error) {
	if p := os.Getenv("CCI_E2E_RUNSC"); p != "" {
		return exec.LookPath(p)
	}
	if toolsDir == "" {
		toolsDir = os.Getenv(ToolsDirEnv)
	}
	if toolsDir == "" {
		if root, err := RepoRoot(); err == nil {
			toolsDir = filepath.Join(root, ".tools", "bin")
		}
	}
	if p := filepath.Join(toolsDir, "runsc"); toolsDir != "" && isExecutable(p) {
		return p, nil
	}
	p, err := exec.LookPath("runsc")
	if err != nil {
		return "", errors.New("runsc is not installed (Debian package runsc; scripts/deps.sh installs it)")
	}
	return p, nil
}

// netCoreNamespaced reports whether net.core.rmem_default exists in a fresh network namespace
// (Linux 6.6+).
func netCoreNamespaced() bool {
	return exec.Command("unshare", "--net", "test", "-e", "/proc/sys/net/core/rmem_default").Run() == nil
}
