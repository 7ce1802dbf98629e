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
	"github.com/cci-shim/cci-shim/iothrottle"
	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

// Runtimes compared by the benches.
const (
	CCI  = e2eenv.CCIRuntime  // io.containerd.cci.v2
	Runc = e2eenv.RuncRuntime // io.containerd.runc.v2, the baseline
)

// podUID is the pod UID the bench's containers claim (annotation
// io.kubernetes.cri.sandbox-uid), so that binds from the emulated kubelet
// pod dir are the pod's own volumes (emptyDir), not hostPath (R4).
const podUID = "ccibench"

// volumeDst is where a bench volume appears in a container.
const volumeDst = "/vol"

// Throttle is the [throttle] table the bench gives the cci shims it starts.
type Throttle struct {
	config.Throttle
	// Burst is the rootfs start burst (throttle.rootfs_burst_bytes, _ops,
	// _seconds). nil writes no burst keys, so the node's default applies
	// and a shim built without the burst accepts the config; a zero value
	// turns the burst off. See BurstConfigSupported.
	Burst *iothrottle.StartBurst `json:"burst,omitempty"`
}

// Off turns every throttle off.
var Off = Throttle{}

// Defaults are the node's default throttles (R8, R14), with the node's
// default start burst, whatever that is in this build.
func Defaults() Throttle { return Throttle{Throttle: config.Default().Throttle} }

// NoBurst is th with the start burst off: what the accuracy benches need,
// so that R8 holds from the first byte. Without burst support in the node
// config it is th (there is no burst then).
func NoBurst(th Throttle) Throttle {
	if BurstConfigSupported() == nil {
		th.Burst = &iothrottle.StartBurst{}
	}
	return th
}

// Bench is a running containerd the benches drive. Its fields are
// read-only.
type Bench struct {
	Env *e2eenv.Env
	tb  e2eenv.TB
	seq atomic.Int64

	// RuncClamp: the CRI runc handler runs runc through clampOOMRunc.
	RuncClamp bool

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
		wrapper, err := writeClampOOMRunc()
		if err != nil {
			tb.Fatalf("ccibench: %v", err)
		}
		tb.Cleanup(func() { os.RemoveAll(filepath.Dir(wrapper)) })
		b.RuncClamp = true
		extra = "[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes." + e2eenv.CRIHandlerRunc + ".options]\n  BinaryName = \"" + wrapper + "\"\n"
	}
	b.Env = e2eenv.Start(tb, e2eenv.Options{NodeConfig: nodeConfig("", Defaults()), LogLevel: "info", CRI: o.CRI, ExtraContainerdConfig: extra})
	return b
}

// clampOOMRunc is the runc the runc handler's shim runs when this host
// refuses a negative oom_score_adj: CRI asks -998 for every pod sandbox,
// which runc cannot set here, so the baseline could not start a pod. It
// does what the cci shim does to the spec it owns (clamp
// process.oomScoreAdj to 0) and runs runc. Its sh and sed run once per
// runc create, so the baseline pays a few milliseconds per container that
// cci does not: the ratios are that much in cci's favour.
const clampOOMRunc = `#!/bin/sh
prev=""
for a in "$@"; do
  if [ "$prev" = "--bundle" ]; then
    sed -i 's/"oomScoreAdj":-[0-9]*/"oomScoreAdj":0/' "$a/config.json" || exit 1
  fi
  prev="$a"
done
exec runc "$@"
`

func writeClampOOMRunc() (string, error) {
	dir, err := os.MkdirTemp("", "ccibench-runc-")
	if err != nil {
		return "", fmt.Errorf("runc wrapper: %w", err)
	}
	p := filepath.Join(dir, "runc-clamp-oom")
	if err := os.WriteFile(p, []byte(clampOOMRunc), 0o755); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("runc wrapper: %w", err)
	}
	return p, nil
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
`, th.RootfsReadBps, th.RootfsWriteBps, th.RootfsReadIOPS, th.RootfsWriteIOPS, th.StdioBps)
	if b := th.Burst; b != nil {
		s += fmt.Sprintf("rootfs_burst_bytes = %d\nrootfs_burst_ops = %d\nrootfs_burst_seconds = %d\n",
			b.Bytes, b.Ops, uint64(b.Window/time.Second))
	}
	return s
}

// BurstConfigSupported returns nil when this build's node config has the
// start burst keys, else the parse error saying it does not.
func BurstConfigSupported() error {
	cfg := config.Default()
	if err := config.Parse([]byte(nodeConfig("", Throttle{Burst: &iothrottle.StartBurst{}})), &cfg); err != nil {
		first, _, _ := strings.Cut(err.Error(), "\n")
		return fmt.Errorf("this build's node config has no throttle.rootfs_burst_* keys (%s)", strings.TrimSpace(first))
	}
	return nil
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

// Volume returns the host dir of a pod volume named name, created empty if
// missing: an emptyDir as kubelet lays it out under its root, which the
// shim keeps as the pod's own bind (R8: volumes are not throttled).
func (b *Bench) Volume(name string) (string, error) {
	dir := filepath.Join(b.Env.Dir, "kubelet", "pods", podUID, "volumes", "kubernetes.io~empty-dir", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating volume: %w", err)
	}
	return dir, nil
}

// container describes one `ctr run`.
type container struct {
	runtime string
	id      string
	volume  string // host dir bound at volumeDst, or ""
	detach  bool
	// annotations are added to the spec (ctr run --annotation k=v).
	annotations []string
	args        []string
	stdout      io.Writer // nil: kept in the returned string
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
	if c.volume != "" {
		args = append(args, "--mount", "type=bind,src="+c.volume+",dst="+volumeDst+",options=rbind:rw",
			"--annotation", "io.kubernetes.cri.sandbox-uid="+podUID)
	}
	for _, a := range c.annotations {
		args = append(args, "--annotation", a)
	}
	args = append(append(args, b.Env.Image, c.id), c.args...)
	return b.ctr(ctx, c.stdout, args...)
}

// ctr runs ctr with args. stdout goes to w, or into the returned string
// when w is nil.
func (b *Bench) ctr(ctx context.Context, w io.Writer, args ...string) (string, error) {
	cmd := b.ctrCmd(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if w != nil {
		cmd.Stdout = w
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
