// Package checks holds the node checks of cci-agent (R21): can this host run
// cci pods the way the node config says? In the spirit of `kata-runtime
// check`, each check asks the real thing — KVM by creating a VM, the thin
// pool through device-mapper, Kata's and containerd's configuration parsed
// as TOML — and reports OK, WARN (works, but not as production needs), FAIL,
// or SKIP (does not apply to this node's backend), with the cause and the fix.
//
// Checks read files under Runner.Root (a fixture tree in tests) and reach
// hardware through the small Host interface (a fake in tests). They change
// nothing on the node: no probe file, no directory created. It is not for
// repairing a node, and not for metrics (cli exports what Run returns).
package checks

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/cci-shim/cci-shim/config"
)

// Status of a check.
type Status string

const (
	OK   Status = "OK"
	Warn Status = "WARN"
	Fail Status = "FAIL"
	// Skip: the check does not apply to this node (e.g. KVM on a runc node).
	Skip Status = "SKIP"
)

// Passed reports whether s is OK or SKIP: nothing to act on. WARN is not a pass.
func (s Status) Passed() bool { return s == OK || s == Skip }

// Result is one check's outcome.
type Result struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
	// Fix says what to change when Status is WARN or FAIL.
	Fix string `json:"fix,omitempty"`
}

// Runner runs the checks against the host under Root.
type Runner struct {
	Root string // "/" on a node
	// Cfg is the node configuration and Source where it came from; LoadErr,
	// when set, is why it could not be loaded (the node-config check fails
	// and the checks that need it are not run).
	Cfg     config.Config
	Source  config.Source
	LoadErr error
	// ContainerdConfig is containerd's main config file (its imports are
	// followed). Default /etc/containerd/config.toml.
	ContainerdConfig string
	Host             Host
}

// DefaultContainerdConfig is containerd's own default config path.
const DefaultContainerdConfig = "/etc/containerd/config.toml"

// Run runs every check, in a fixed order.
func (r Runner) Run() []Result {
	if r.Host == nil {
		r.Host = RealHost{}
	}
	if r.ContainerdConfig == "" {
		r.ContainerdConfig = DefaultContainerdConfig
	}
	if r.LoadErr != nil {
		return []Result{{Name: "node-config", Status: Fail, Detail: r.LoadErr.Error(),
			Fix: "fix the node config; the other checks need it"}}
	}
	rs := []Result{r.nodeConfig()}
	rs = append(rs, r.kvm(), r.vhostVsock(), r.cpuVirt())
	rs = append(rs, r.backendChecks()...)
	ctrd := r.loadContainerd()
	rs = append(rs, r.containerdRuntime(ctrd), r.containerdRoots(ctrd), r.thinPool(ctrd), r.rootfsSize(ctrd))
	rs = append(rs, r.cgroups(), r.gpus(), r.stateDirs())
	return rs
}

// backendChecks are the checks of the configured backend's own binaries
// and configuration.
func (r Runner) backendChecks() []Result {
	switch r.Cfg.Backend.Kind {
	case config.BackendKata:
		kc := r.loadKata()
		return []Result{r.backendBinary(), r.kataConfig(kc), r.kataAnnotations(kc), r.kataDiskLimiter(kc), r.hypervisor(kc)}
	case config.BackendRunc:
		return []Result{r.backendBinary(), r.ociRuntime("runc")}
	case config.BackendGVisor:
		return append([]Result{r.backendBinary()}, GVisor{Cfg: r.Cfg}.Results()...)
	default:
		return []Result{r.backendBinary()}
	}
}

// Summary is the overall status: FAIL if any check failed, else WARN if any
// warned, else OK.
func Summary(rs []Result) Status {
	s := OK
	for _, r := range rs {
		switch r.Status {
		case Fail:
			return Fail
		case Warn:
			s = Warn
		}
	}
	return s
}

// Failed reports whether any result is a failure.
func Failed(rs []Result) bool { return Summary(rs) == Fail }

// ExitCode is `cci-agent check`'s exit status for rs: 0 every check passed
// (OK or SKIP), 1 at least one FAIL, 3 warnings but no failure. (2 is a
// usage error.)
func ExitCode(rs []Result) int {
	switch Summary(rs) {
	case Fail:
		return 1
	case Warn:
		return 3
	}
	return 0
}

func (r Runner) path(p string) string { return filepath.Join(r.Root, p) }

// needed is the status of a missing thing: FAIL when the configured backend
// needs it, else SKIP.
func needed(need bool) Status {
	if need {
		return Fail
	}
	return Skip
}

func (r Runner) kata() bool { return r.Cfg.Backend.Kind == config.BackendKata }

func (r Runner) nodeConfig() Result {
	return Result{Name: "node-config", Status: OK,
		Detail: fmt.Sprintf("%s (%s): backend %s, state_dir %s", r.Source.Path, r.Source.From, r.Cfg.Backend.Kind, r.Cfg.StateDir)}
}

// readFile reads a file under Root.
func (r Runner) readFile(p string) ([]byte, error) { return os.ReadFile(r.path(p)) }
