package checks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cci-shim/cci-shim/config"
	"github.com/cci-shim/cci-shim/sandbox/backend"
)

// GVisor checks what the gvisor backend needs on this node: runsc and its
// release, a platform that runs a sandbox, a runsc that can use pod network
// namespaces on this kernel, nvproxy when GPUs are enabled, and a state dir
// the runc shim can execute the runsc wrapper from. Run it when
// backend.kind is "gvisor".
type GVisor struct {
	Cfg config.Config
	// Exec runs a command and returns its combined output; nil runs it.
	Exec func(ctx context.Context, name string, args ...string) ([]byte, error)
	// NetCoreNamespaced reports whether net.core.rmem_default exists in a
	// new network namespace (Linux 6.6+); nil finds out with unshare.
	NetCoreNamespaced func() bool
	// Timeout bounds the test sandbox. Default 20 s.
	Timeout time.Duration
}

// runsc releases the checks know about.
const (
	runscNetnsFix = 20240731 // takes Linux 6.6+'s namespaced net.core for the host's before this
	runscSystrap  = 20230223 // first with the systrap platform (open-sourced 2023-02-22)
	runscNVProxy  = 20230525 // first with --nvproxy (added 2023-05-24)
)

// Results runs the gvisor checks.
func (g GVisor) Results() []Result {
	if g.Exec == nil {
		g.Exec = runKillingGroup
	}
	if g.NetCoreNamespaced == nil {
		g.NetCoreNamespaced = func() bool {
			return exec.Command("unshare", "--net", "test", "-e", "/proc/sys/net/core/rmem_default").Run() == nil
		}
	}
	if g.Timeout == 0 {
		g.Timeout = 20 * time.Second
	}
	gc := g.Cfg.Backend.GVisor
	runsc, err := exec.LookPath(gc.Runsc)
	if err != nil {
		return []Result{{Name: "gvisor-runsc", Status: Fail, Detail: fmt.Sprintf("runsc %q: %v (Debian package runsc, or set backend.gvisor.runsc)", gc.Runsc, err)}}
	}
	version, err := backend.RunscVersion(runsc)
	if err != nil {
		return []Result{{Name: "gvisor-runsc", Status: Fail, Detail: err.Error()}}
	}
	rs := []Result{{Name: "gvisor-runsc", Status: OK, Detail: fmt.Sprintf("%s, release %d", runsc, version)}}
	rs = append(rs, g.platform(runsc, version), g.network(version), g.nvproxy(version), g.stateDir())
	return rs
}

// platform runs `true` in a throwaway sandbox on the configured platform.
func (g GVisor) platform(runsc string, version int) Result {
	p := g.Cfg.Backend.GVisor.Platform
	if p == "systrap" && version < runscSystrap {
		return Result{Name: "gvisor-platform", Status: Fail, Detail: fmt.Sprintf("platform systrap needs runsc %d or later; this one is %d", runscSystrap, version)}
	}
	root, err := os.MkdirTemp("", "cci-agent-runsc-")
	if err != nil {
		return Result{Name: "gvisor-platform", Status: Fail, Detail: err.Error()}
	}
	defer os.RemoveAll(root)
	defer g.destroySandboxes(runsc, root)
	ctx, cancel := context.WithTimeout(context.Background(), g.Timeout)
	defer cancel()
	start := time.Now()
	out, err := g.Exec(ctx, runsc, "--root", root, "--platform="+p, "--network=none", "do", "true")
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return Result{Name: "gvisor-platform", Status: Fail, Detail: fmt.Sprintf("platform %s: a test sandbox did not finish in %v (the KVM platform hangs this way in a nested VM)", p, g.Timeout)}
	case err != nil:
		return Result{Name: "gvisor-platform", Status: Fail, Detail: fmt.Sprintf("platform %s: runsc do true: %v: %s", p, err, lastLines(string(out), 3))}
	}
	return Result{Name: "gvisor-platform", Status: OK, Detail: fmt.Sprintf("platform %s runs a sandbox (%v)", p, time.Since(start).Round(time.Millisecond))}
}

// destroySandboxes removes whatever a hung or failed test left in root.
func (g GVisor) destroySandboxes(runsc, root string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := g.Exec(ctx, runsc, "--root", root, "list", "--quiet")
	if err != nil {
		return
	}
	for _, id := range strings.Fields(string(out)) {
		g.Exec(ctx, runsc, "--root", root, "delete", "--force", id)
	}
}

// runKillingGroup runs a command in a process group of its own, killed as a
// whole when ctx ends, and returns its combined output.
func runKillingGroup(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &unix.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return unix.Kill(-cmd.Process.Pid, unix.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	return cmd.CombinedOutput()
}

// network: runsc before 20240731 cannot use a pod's network namespace on
// Linux 6.6+ (it takes every namespace for the host's).
func (g GVisor) network(version int) Result {
	n := g.Cfg.Backend.GVisor.Network
	if n == "none" {
		return Result{Name: "gvisor-network", Status: Warn, Detail: "network none: pods get loopback only, not their CNI network"}
	}
	if version < runscNetnsFix && g.NetCoreNamespaced() {
		return Result{Name: "gvisor-network", Status: Fail, Detail: fmt.Sprintf("runsc %d refuses every pod network namespace on this kernel (\"cannot run with network enabled in root network namespace\"; fixed in runsc %d): install a newer runsc or set backend.gvisor.network = \"none\"", version, runscNetnsFix)}
	}
	return Result{Name: "gvisor-network", Status: OK, Detail: "network sandbox: gVisor's network stack on each pod's CNI namespace"}
}

func (g GVisor) nvproxy(version int) Result {
	if !g.Cfg.Backend.GVisor.NVProxy {
		return Result{Name: "gvisor-nvproxy", Status: OK, Detail: "nvproxy off: GPU pods are refused on this backend"}
	}
	if version < runscNVProxy {
		return Result{Name: "gvisor-nvproxy", Status: Fail, Detail: fmt.Sprintf("backend.gvisor.nvproxy needs runsc %d or later; this one is %d", runscNVProxy, version)}
	}
	if _, err := os.Stat("/dev/nvidiactl"); err != nil {
		return Result{Name: "gvisor-nvproxy", Status: Fail, Detail: "nvproxy is on but the host has no NVIDIA driver (/dev/nvidiactl)"}
	}
	return Result{Name: "gvisor-nvproxy", Status: OK, Detail: "nvproxy forwards GPU pods to the host driver"}
}

// stateDir: the runc shim executes the runsc wrapper the adapter writes
// under <state_dir>/gvisor, so that filesystem must allow exec.
func (g GVisor) stateDir() Result {
	if g.Cfg.Backend.GVisor.Shim != config.GVisorShimRunc {
		return Result{Name: "gvisor-state-exec", Status: OK, Detail: "gVisor's own shim reads a runsc.toml: nothing to execute from the state dir"}
	}
	dir := g.Cfg.StateDir
	for {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err == nil {
			if st.Flags&unix.ST_NOEXEC != 0 {
				return Result{Name: "gvisor-state-exec", Status: Fail, Detail: fmt.Sprintf("%s is on a noexec filesystem: the runc shim cannot run the runsc wrapper written there", dir)}
			}
			return Result{Name: "gvisor-state-exec", Status: OK, Detail: fmt.Sprintf("the runsc wrapper can run from %s", filepath.Join(g.Cfg.StateDir, "gvisor"))}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return Result{Name: "gvisor-state-exec", Status: Warn, Detail: "cannot stat the state dir or any parent"}
		}
		dir = parent
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
