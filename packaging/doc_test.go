// Package packaging holds the files an operator installs (systemd units,
// containerd drop-ins, the node config, Kata's settings, the thin-pool and
// blockfile scripts, the RuntimeClass) and, in its tests only, the checks
// that they work: the scripts run against fake device-mapper tools, the
// units through systemd-analyze, the drop-ins through containerd itself.
package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cci-shim/cci-shim/internal/testutil"
)

// tool finds a program the tests need: in PATH, or in the project's tools
// dir. Under CI=true a missing tool fails the test instead of skipping it.
func tool(t *testing.T, name string) string {
	t.Helper()
	for _, dir := range []string{os.Getenv("CCI_TOOLS_DIR"), "../.tools/bin"} {
		if dir == "" {
			continue
		}
		if p, err := filepath.Abs(filepath.Join(dir, name)); err == nil {
			if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
				return p
			}
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		testutil.Unavailable(t, "%s is not installed: %v", name, err)
	}
	return p
}

func needRoot(t *testing.T) { testutil.RequireRoot(t, "starting a containerd") }
