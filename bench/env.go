//go:build linux

package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cci-shim/cci-shim/config"
	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

// Runtimes compared by the benches.
const (
	CCI  = e2eenv.CCIRuntime  // io.containerd.cci.v2
	Runc = e2eenv.RuncRuntime // io.containerd.runc.v2, the baseline
)

// volumeReplacement asks the cci shim to replace the container's bind
// mounts with a pod-private disk volume (R4 replaceByEmptyDir): with `ctr`
// the platform gives a pod no host directory, and a pod volume is not
// throttled (R8).
const volumeReplacement = `coordinator.cci.io/hostpath-replacement=[{"name":"*","policyType":"replaceByEmptyDir","emptyDir":{"sizeLimit":"4Gi"}}]`

// volumeDst is where a bench volume appears in a container.
const volumeDst = "/vol"

// Throttle is the [throttle] table the bench gives the cci shims it starts.
type Throttle struct {
	config.Throttle
}

// Off turns every throttle off, the start burst with them.
var Off = Throttle{}

// Defaults are the node's default throttles (R8, R14) and start burst.
func Defaults() Throttle { return Throttle{Throttle: config.Default().Throttle} }

// NoBurst is th with the start burst off: what the accuracy benches need,
// so that R8 holds from the first byte.
func NoBurst(th Throttle) Throttle {
	th.RootfsBurstBytes, th.RootfsBurstOps, th.RootfsBurstSeconds = 0, 0, 0
	return th
}

// Bench is a running containerd the benches drive. Its fields are
// read-only.
type Bench struct {
	Env *e2eenv.Env
	tb  e2eenv.TB
	seq atomic.Int64

	// RestrictOOM: this host refuses a negative oom_score_adj, and
	// containerd clamps the one CRI asks for (e2eenv.CRIRestrictOOM).
	RestrictOOM bool

	began       time.Time
	progressOut func(string)
	progressMu  sync.Mutex // serialises progress lines
}

// Options says what a bench's containerd needs.
type Options struct {
	// CRI enables the CRI plugin and its CNI bridge (density).
	CRI bool
	// Progress, if not nil, receives the progress lines (else tb.Logf).
	Progress func(line string)
}

// Start brings up containerd with e2eenv (teardown registered with
// tb.Cleanup) and the node's default throttles; no CRI.
func Start(tb e2eenv.TB) *Bench {
	tb.Helper()
	return StartWith(tb, Options{})
}

// StartWith is Start with options.
func StartWith(tb e2eenv.TB, o Options) *Bench {
	tb.Helper()
	b := &Bench{tb: tb, began: time.Now(), progressOut: o.Progress}
	// Registered before the env's teardown, so it runs after it: the OCI
	// runtime leaves each containerd namespace's parent cgroup behind.
	tb.Cleanup(b.removeCgroups)
	var extra string
	if o.CRI && refusesNegativeOOM() {
		b.RestrictOOM = true
		extra = e2eenv.CRIRestrictOOM
	}
	b.Env = e2eenv.Start(tb, e2eenv.Options{NodeConfig: nodeConfig("", Defaults()), LogLevel: "info", CRI: o.CRI, ExtraContainerdConfig: extra})
	return b
}

// refusesNegativeOOM reports whether this host refuses a negative
// oom_score_adj to this (root) process, as some VMs do.
func refusesNegativeOOM() bool {
	cur, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return false
	}
	if err := os.WriteFile("/proc/self/oom_score_adj", []byte("-1"), 0); err != nil {
		return true
	}
	os.WriteFile("/proc/self/oom_score_adj", cur, 0)
	return false
}

// nodeConfig is what a bench adds to the env's cci node config (runc
// backend, every path in the env, kubelet's root emulated there): prefix
// (root-level keys such as backend.kind), then th.
func nodeConfig(prefix string, th Throttle) string {
	s := prefix
	if s != "" && !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	s += fmt.Sprintf(`[throttle]
rootfs_read_bps = %d
rootfs_write_bps = %d
rootfs_read_iops = %d
rootfs_write_iops = %d
stdio_bps = %d
rootfs_burst_bytes = %d
rootfs_burst_ops = %d
rootfs_burst_seconds = %d
`, th.RootfsReadBps, th.RootfsWriteBps, th.RootfsReadIOPS, th.RootfsWriteIOPS, th.StdioBps,
		th.RootfsBurstBytes, th.RootfsBurstOps, th.RootfsBurstSeconds)
	return s
}

// SetThrottle makes the cci shims started from now on use th.
func (b *Bench) SetThrottle(th Throttle) error {
	return b.setNodeConfig("", th)
}

// setNodeConfig makes the cci shims started from now on use prefix (root
// keys) and th.
func (b *Bench) setNodeConfig(prefix string, th Throttle) error {
	return b.Env.SetNodeConfig(nodeConfig(prefix, th))
}

// logf logs through the harness (or test) the bench was started with.
func (b *Bench) logf(format string, args ...any) {
	b.tb.Helper()
	b.tb.Logf(format, args...)
}

// newID returns a container ID unique in this bench.
func (b *Bench) newID(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, b.seq.Add(1))
}

// Volume returns a host dir to bind at volumeDst: under cci the shim
// replaces it with a pod-private volume (volumeReplacement), under runc it
// is bound as it is.
func (b *Bench) Volume(name string) (string, error) {
	dir := filepath.Join(b.Env.Dir, "bench-volumes", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating volume: %w", err)
	}
	return dir, nil
}

// container describes one `ctr run`.
type container struct {
	runtime string
	id      string
	volume  string // host dir bound at volumeDst (a pod volume under cci), or ""
	image   string // default the env's busybox image
	detach  bool
	seccomp bool // ctr run --seccomp: the runtime's default profile
	// annotations are added to the spec (ctr run --annotation k=v).
	annotations []string
	args        []string
	stdout      io.Writer // nil: kept in the returned string
	stderr      io.Writer // nil: kept for the error
}

// ctrCmd builds a ctr command against the env.
func (b *Bench) ctrCmd(ctx context.Context, args ...string) *exec.Cmd {
	full := append([]string{"--address", b.Env.Address, "--namespace", b.Env.Namespace}, args...)
	cmd := exec.CommandContext(ctx, filepath.Join(b.Env.ToolsDir, "ctr"), full...)
	cmd.Dir = b.Env.Dir
	cmd.Env = []string{"PATH=" + b.Env.ToolsDir + ":/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root",
		"CONTAINERD_SNAPSHOTTER=" + e2eenv.Snapshotter}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// run runs c with ctr and returns what it wrote to stdout (unless c.stdout
// takes it) and an error carrying ctr's stderr.
func (b *Bench) run(ctx context.Context, c container) (string, error) {
	args := []string{"run", "--snapshotter", e2eenv.Snapshotter, "--runtime", c.runtime}
	if c.detach {
		args = append(args, "-d")
	} else {
		args = append(args, "--rm")
	}
	if c.seccomp {
		args = append(args, "--seccomp")
	}
	if c.volume != "" {
		args = append(args, "--mount", "type=bind,src="+c.volume+",dst="+volumeDst+",options=rbind:rw")
		if c.runtime == CCI {
			args = append(args, "--annotation", volumeReplacement)
		}
	}
	for _, a := range c.annotations {
		args = append(args, "--annotation", a)
	}
	image := c.image
	if image == "" {
		image = b.Env.Image
	}
	args = append(append(args, image, c.id), c.args...)
	return b.ctrStreams(ctx, c.stdout, c.stderr, args...)
}

// ctr runs ctr with args. stdout goes to w, or into the returned string
// when w is nil.
func (b *Bench) ctr(ctx context.Context, w io.Writer, args ...string) (string, error) {
	return b.ctrStreams(ctx, w, nil, args...)
}

// ctrStreams is ctr with stderr also copied to ew when not nil.
func (b *Bench) ctrStreams(ctx context.Context, w, ew io.Writer, args ...string) (string, error) {
	cmd := b.ctrCmd(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if w != nil {
		cmd.Stdout = w
	}
	if ew != nil {
		cmd.Stderr = io.MultiWriter(&errb, ew)
	}
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, ctrErrors(errb.String()))
	}
	return out.String(), nil
}

// ctrErrors drops ctr's log warnings (containerd's cgroup v1 deprecation
// notice on every call here) from its stderr.
func ctrErrors(stderr string) string {
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if !strings.Contains(l, "level=warning") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// exec runs args in the running container id and returns its stdout.
func (b *Bench) exec(ctx context.Context, id string, args ...string) (string, error) {
	return b.ctr(ctx, nil, append([]string{"task", "exec", "--exec-id", b.newID("x"), id}, args...)...)
}

// remove kills and deletes a detached container, ignoring what is already
// gone.
func (b *Bench) remove(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b.ctr(ctx, nil, "task", "kill", "-s", "SIGKILL", id)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, err := b.ctr(ctx, nil, "task", "rm", id); err == nil || strings.Contains(err.Error(), "not found") {
			break
		}
	}
	b.ctr(ctx, nil, "container", "rm", id)
}
