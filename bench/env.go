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

// podUID is the pod UID the bench's containers claim (annotation
// io.kubernetes.cri.sandbox-uid), so that binds from the emulated kubelet
// pod dir are the pod's own volumes (emptyDir), not hostPath (R4).
const podUID = "ccibench"

// volumeDst is where a bench volume appears in a container.
const volumeDst = "/vol"

// Off turns every throttle off.
var Off = config.Throttle{}

// Defaults are the node's default throttles (R8, R14).
func Defaults() config.Throttle { return config.Default().Throttle }

// Bench is a running containerd the benches drive. Its fields are
// read-only.
type Bench struct {
	Env *e2eenv.Env
	tb  e2eenv.TB
	seq atomic.Int64
}

// Start brings up containerd with e2eenv (teardown registered with
// tb.Cleanup) and the node's default throttles.
func Start(tb e2eenv.TB) *Bench {
	tb.Helper()
	env := e2eenv.Start(tb, e2eenv.Options{NodeConfig: nodeConfig(Defaults()), LogLevel: "info"})
	return &Bench{Env: env, tb: tb}
}

// nodeConfig is what a bench adds to the env's cci node config (runc
// backend, every path in the env, kubelet's root emulated there): th.
func nodeConfig(th config.Throttle) string {
	return fmt.Sprintf(`[throttle]
rootfs_read_bps = %d
rootfs_write_bps = %d
rootfs_read_iops = %d
rootfs_write_iops = %d
stdio_bps = %d
`, th.RootfsReadBps, th.RootfsWriteBps, th.RootfsReadIOPS, th.RootfsWriteIOPS, th.StdioBps)
}

// SetThrottle makes the cci shims started from now on use th.
func (b *Bench) SetThrottle(th config.Throttle) error {
	return b.Env.SetNodeConfig(nodeConfig(th))
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
