//go:build linux

package e2eenv

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cci-shim/cci-shim/sandbox"
)

const (
	workloadTimeout   = 20 * time.Second // stopping pods and containers through the APIs
	containerdTimeout = 10 * time.Second // SIGTERM to SIGKILL
)

// Stop tears the env down: pods and containers through CRI and the client, containerd
// (SIGTERM, SIGKILL after 10 s), every leftover process of the env (shims and their
// containers), every mount under Dir (deepest first), the loop devices backed by files under
// Dir, the CNI bridge, and Dir itself. It is idempotent and registered with t.Cleanup by Start;
// call it directly to check Leaks after teardown. When the test failed, it logs the tail of
// containerd's log first.
func (e *Env) Stop() error {
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return nil
	}
	e.stopped = true
	e.mu.Unlock()

	began := time.Now()
	if e.t.Failed() {
		e.t.Logf("e2eenv: test failed; %s", e.logTail(100))
	}
	var errs []error
	if e.ContainerdPID() != 0 {
		e.stopWorkloads()
	}
	e.closeClients()
	if err := e.stopContainerd(); err != nil {
		errs = append(errs, err)
	}
	e.cancel()
	if err := e.killLeftovers(); err != nil {
		errs = append(errs, err)
	}
	if err := unmountAll(e.Dir); err != nil {
		errs = append(errs, err)
	}
	if err := detachLoops(e.Dir); err != nil {
		errs = append(errs, err)
	}
	// The cgroup parents of the env's namespace (containerd's default for ctr,
	// and the one the cci shim chooses) outlive their containers.
	for _, cg := range []string{"/" + e.Namespace, sandbox.DefaultCgroupRoot + "/" + e.Namespace} {
		if err := removeCgroupTree(cg); err != nil {
			errs = append(errs, fmt.Errorf("removing cgroup %s: %w", cg, err))
		}
	}
	if e.cri {
		if _, err := os.Stat("/sys/class/net/" + e.BridgeName); err == nil {
			if _, err := run(e.tools.ip, "link", "delete", e.BridgeName); err != nil {
				errs = append(errs, fmt.Errorf("deleting bridge: %w", err))
			}
		}
	}
	if m, err := mountsUnder(e.Dir); err != nil || len(m) > 0 {
		errs = append(errs, fmt.Errorf("not removing %s: mounts remain under it (%v)", e.Dir, err))
	} else if err := os.RemoveAll(e.Dir); err != nil {
		errs = append(errs, fmt.Errorf("removing %s: %w", e.Dir, err))
	}
	e.t.Logf("e2eenv: teardown took %v", time.Since(began).Round(time.Millisecond))
	return errors.Join(errs...)
}

// stopWorkloads removes CRI pods, then kills and deletes every task and container in every
// namespace, with snapshots. Failures are logged: the kill and unmount passes that follow clean
// up what is left.
func (e *Env) stopWorkloads() {
	ctx, cancel := context.WithTimeout(context.Background(), workloadTimeout)
	defer cancel()
	if e.cri {
		rt, _, err := e.criClients()
		if err != nil {
			e.t.Logf("e2eenv: teardown: %v", err)
			return
		}
		pods, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
		if err != nil {
			e.t.Logf("e2eenv: teardown: listing pods: %v", err)
		} else {
			for _, p := range pods.Items {
				e.t.Logf("e2eenv: teardown: removing pod %s (%s)", p.Metadata.GetName(), p.Id)
				if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id}); err != nil {
					e.t.Logf("e2eenv: teardown: stopping pod %s: %v", p.Id, err)
				}
				if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
					e.t.Logf("e2eenv: teardown: removing pod %s: %v", p.Id, err)
				}
			}
		}
	}
	c, err := e.containerdClient()
	if err != nil {
		e.t.Logf("e2eenv: teardown: %v", err)
		return
	}
	nss, err := c.NamespaceService().List(ctx)
	if err != nil {
		e.t.Logf("e2eenv: teardown: listing namespaces: %v", err)
		return
	}
	for _, ns := range nss {
		nctx := namespaces.WithNamespace(ctx, ns)
		containers, err := c.Containers(nctx)
		if err != nil {
			e.t.Logf("e2eenv: teardown: listing containers in %s: %v", ns, err)
			continue
		}
		for _, ctr := range containers {
			e.t.Logf("e2eenv: teardown: deleting container %s/%s", ns, ctr.ID())
			if task, err := ctr.Task(nctx, nil); err == nil {
				killTask(nctx, task)
			}
			if err := ctr.Delete(nctx, client.WithSnapshotCleanup); err != nil {
				e.t.Logf("e2eenv: teardown: deleting container %s/%s: %v", ns, ctr.ID(), err)
			}
		}
	}
}

func killTask(ctx context.Context, task client.Task) {
	wait, err := task.Wait(ctx)
	if err == nil {
		if task.Kill(ctx, syscall.SIGKILL, client.WithKillAll) == nil {
			select {
			case <-wait:
			case <-time.After(5 * time.Second):
			}
		}
	}
	_, _ = task.Delete(ctx, client.WithProcessKill)
}

func (e *Env) closeClients() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.client != nil {
		_ = e.client.Close()
		e.client = nil
	}
	if e.criConn != nil {
		_ = e.criConn.Close()
		e.criConn = nil
	}
}

// stopContainerd sends SIGTERM, waits up to containerdTimeout, then SIGKILL.
func (e *Env) stopContainerd() error {
	if e.ContainerdPID() == 0 {
		return nil
	}
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.exited:
		return nil
	case <-time.After(containerdTimeout):
	}
	e.t.Logf("e2eenv: teardown: containerd did not exit %v after SIGTERM; SIGKILL", containerdTimeout)
	_ = e.cmd.Process.Kill()
	select {
	case <-e.exited:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("containerd (pid %d) did not exit after SIGKILL", e.cmd.Process.Pid)
	}
}

// killLeftovers SIGKILLs the env's remaining processes until none is left (5 s at most).
func (e *Env) killLeftovers() error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		procs := e.relatedProcs()
		if len(procs) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			var names []string
			for _, p := range procs {
				names = append(names, fmt.Sprintf("%d (%s)", p.pid, p.cmdline))
			}
			return fmt.Errorf("processes survive SIGKILL: %s", strings.Join(names, ", "))
		}
		for _, p := range procs {
			e.t.Logf("e2eenv: teardown: SIGKILL leftover process %d: %s", p.pid, p.cmdline)
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// unmountAll unmounts everything at or below dir, deepest first, falling back to a lazy
// unmount; stacked mounts take more passes.
func unmountAll(dir string) error {
	for pass := 0; pass < 10; pass++ {
		mounts, err := mountsUnder(dir)
		if err != nil {
			return err
		}
		if len(mounts) == 0 {
			return nil
		}
		for _, m := range mounts {
			if err := unix.Unmount(m.mountPoint, 0); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				_ = unix.Unmount(m.mountPoint, unix.MNT_DETACH)
			}
		}
	}
	mounts, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	if len(mounts) > 0 {
		return fmt.Errorf("mounts remain under %s: %v", dir, mounts)
	}
	return nil
}

// detachLoops detaches the loop devices backed by files under dir.
func detachLoops(dir string) error {
	var errs []error
	for _, dev := range loopsBackedUnder(dir) {
		f, err := os.OpenFile(dev, os.O_RDONLY, 0)
		if err != nil {
			errs = append(errs, fmt.Errorf("opening %s: %w", dev, err))
			continue
		}
		// With the device still open elsewhere the kernel detaches it on last close.
		if err := unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0); err != nil && !errors.Is(err, unix.ENXIO) {
			errs = append(errs, fmt.Errorf("detaching %s: %w", dev, err))
		}
		f.Close()
	}
	return errors.Join(errs...)
}

// Leaks lists what the env's workloads left behind: processes (shims, containers), mounts
// under Dir, loop devices backed by files under Dir, unix sockets under the state dirs, CNI IP
// allocations. While the env runs, its own containerd, XFS mount and loop device are not
// leaks; after Stop, anything at all (including Dir and the CNI bridge) is. Shims exit
// asynchronously after a delete: use WaitNoLeaks rather than a single call right after one.
func (e *Env) Leaks() []string {
	e.mu.Lock()
	stopped := e.stopped
	e.mu.Unlock()
	var leaks []string
	var exclude []int
	if !stopped {
		exclude = append(exclude, e.ContainerdPID())
		e.mu.Lock()
		for pid := range e.kept {
			exclude = append(exclude, pid)
		}
		e.mu.Unlock()
	}
	for _, p := range e.relatedProcs(exclude...) {
		leaks = append(leaks, fmt.Sprintf("process %d: %s", p.pid, p.cmdline))
	}
	mounts, err := mountsUnder(e.Dir)
	if err != nil {
		leaks = append(leaks, err.Error())
	}
	for _, m := range mounts {
		if !stopped && (m.mountPoint == e.xfsMount || slices.Contains(e.runDirs(), m.mountPoint)) {
			continue
		}
		// runsc (2024+) pins one empty network namespace per runsc root for its gofers:
		// node state of the gvisor backend, like the runtime's own root, not a pod's; it
		// goes with the env.
		if !stopped && m.fsType == "nsfs" && filepath.Base(m.mountPoint) == "null-netns" {
			continue
		}
		leaks = append(leaks, fmt.Sprintf("mount %s (%s from %s)", m.mountPoint, m.fsType, m.source))
	}
	for _, dev := range loopsBackedUnder(e.Dir) {
		if !stopped && dev == e.xfsLoop {
			continue
		}
		leaks = append(leaks, "loop device "+dev)
	}
	for _, s := range socketsUnder(e.stateDirs()...) {
		leaks = append(leaks, "socket "+s)
	}
	for _, f := range fifosUnder(e.stateDirs()...) {
		leaks = append(leaks, "FIFO "+f)
	}
	// ctr puts a container's cgroup at /<namespace>/<id> (the env's own
	// namespace: CRI's k8s.io is shared with other envs).
	for _, ctl := range []string{"memory", "cpu", "blkio", "pids"} {
		cgs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", ctl, e.Namespace, "*"))
		shimCgs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", ctl, sandbox.DefaultCgroupRoot, e.Namespace, "*"))
		cgs = append(cgs, shimCgs...)
		for _, cg := range cgs {
			if st, err := os.Stat(cg); err == nil && st.IsDir() {
				leaks = append(leaks, "cgroup "+cg)
			}
		}
	}
	ipam, _ := filepath.Glob(filepath.Join(e.cniDataDir(), "*", "*"))
	for _, f := range ipam {
		if b := filepath.Base(f); b != "lock" && !strings.HasPrefix(b, "last_reserved_ip") {
			leaks = append(leaks, "CNI IP allocation "+f)
		}
	}
	if stopped {
		if _, err := os.Stat(e.Dir); err == nil {
			leaks = append(leaks, "dir "+e.Dir)
		}
		if _, err := os.Stat("/sys/class/net/" + e.BridgeName); err == nil {
			leaks = append(leaks, "network link "+e.BridgeName)
		}
		if pid := e.ContainerdPID(); pid != 0 {
			leaks = append(leaks, fmt.Sprintf("containerd %d", pid))
		}
	}
	return leaks
}

// WaitNoLeaks polls Leaks until it is empty or timeout passes, and returns the last result.
func (e *Env) WaitNoLeaks(timeout time.Duration) []string {
	deadline := time.Now().Add(timeout)
	for {
		leaks := e.Leaks()
		if len(leaks) == 0 || time.Now().After(deadline) {
			return leaks
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// removeCgroupTree removes the cgroup at cg and every cgroup below it, deepest first: after a
// crash the containers' own cgroups are left under their parents. A cgroup whose killed
// processes are still on their way out is retried for up to two seconds.
func removeCgroupTree(cg string) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		roots, err := sandbox.CgroupHierarchies()
		if err != nil {
			return err
		}
		var dirs []string
		for _, root := range roots {
			_ = filepath.WalkDir(filepath.Join(root, cg), func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, strings.TrimPrefix(p, root))
				}
				return nil
			})
		}
		sort.Slice(dirs, func(i, j int) bool { return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/") })
		var errs []error
		for _, d := range dirs {
			if err := sandbox.RemoveCgroup(d); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) == 0 || time.Now().After(deadline) {
			return errors.Join(errs...)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
