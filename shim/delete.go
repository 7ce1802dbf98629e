package shim

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/cci-shim/cci-shim/gpu"
	"github.com/cci-shim/cci-shim/sandbox"
)

// outputFlushTimeout bounds how long Delete waits for a process's last
// output before closing its stdio.
const outputFlushTimeout = time.Second

// relayFlushTimeout bounds how long Shutdown waits for queued events.
const relayFlushTimeout = 5 * time.Second

// Delete forwards the delete, then releases what the process held here: an
// exec's stdio; for a container, every resource the owner holds for it.
func (s *service) Delete(ctx context.Context, r *taskv3.DeleteRequest) (*taskv3.DeleteResponse, error) {
	c, t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	resp, err := t.Delete(ctx, r)
	if err != nil {
		return nil, err
	}
	for _, p := range c.removeProcs(r.ExecID) {
		p.waitOutput(outputFlushTimeout)
		p.close()
	}
	if r.ExecID != "" {
		return resp, nil
	}
	s.mu.Lock()
	delete(s.containers, r.ID)
	s.mu.Unlock()
	s.statsChanged()
	// The backend has deleted the task: its record goes without a second
	// delete; the rest is released in order.
	ctx = context.WithoutCancel(ctx)
	if err := s.owner.forgetKind(resTask, r.ID); err != nil {
		log.G(ctx).WithError(err).Warn("forgetting deleted task")
	}
	if err := s.owner.releaseContainer(ctx, r.ID); err != nil {
		log.G(ctx).WithError(err).Warn("releasing container resources")
	}
	return resp, nil
}

// Shutdown stops the backend and exits once the pod has no container left;
// containerd calls it after each delete.
//
// The teardown (the backend, draining the log volume, the pod's volumes)
// runs after the reply: containerd gives Shutdown a few seconds, and a log
// destination that is down must not fail the pod's removal. Every step of
// it is bounded; the shim exits when it is done, and a Create meanwhile is
// refused.
func (s *service) Shutdown(ctx context.Context, r *taskv3.ShutdownRequest) (*emptypb.Empty, error) {
	// Answered at once while the pod has containers, even with a Create in
	// flight: containerd, reloading after a restart, shuts down what it
	// takes for a leaked shim with a deadline of a few seconds.
	if !s.noContainers() {
		return &emptypb.Empty{}, nil
	}
	s.createMu.Lock()
	defer s.createMu.Unlock()
	if !s.noContainers() || s.closing {
		return &emptypb.Empty{}, nil
	}
	s.closing = true
	go s.teardown(context.WithoutCancel(ctx))
	return &emptypb.Empty{}, nil
}

// teardown releases everything the pod holds and ends the shim.
func (s *service) teardown(ctx context.Context) {
	s.createMu.Lock()
	defer s.createMu.Unlock()
	s.releasePod(ctx)
	if !s.relay.flush(relayFlushTimeout) {
		log.G(ctx).Warn("events still queued at shutdown")
	}
	if err := s.owner.releaseAll(ctx); err != nil {
		log.G(ctx).WithError(err).Warn("releasing pod resources")
	}
	if s.owner.empty() {
		if err := os.RemoveAll(s.podDir); err != nil {
			log.G(ctx).WithError(err).Warn("removing pod state")
		}
	}
	s.shutdown.Shutdown()
}

// releasePod releases the pod's own resources (backend, log collector, GPUs,
// volumes) but not this shim's record: its socket goes when it exits.
func (s *service) releasePod(ctx context.Context) {
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	err := s.owner.release(ctx, func(r resource) bool { return r.Container == "" && r.Kind != resShim })
	if err != nil {
		log.G(ctx).WithError(err).Warn("releasing pod resources")
	}
	s.mu.Lock()
	s.stopping = false
	s.mu.Unlock()
}

// releaseRecord releases a resource recorded by an earlier process of the
// pod (this shim crashed, or it is the delete subcommand). Each case is
// idempotent: the resource may never have been created.
func releaseRecord(cfg releaseEnv) releaser {
	return func(ctx context.Context, r resource) error {
		switch r.Kind {
		case resBackend:
			if r.Proc.Pid > 0 && !r.Proc.stop(ctx, 0) {
				return fmt.Errorf("backend shim %d still runs", r.Proc.Pid)
			}
			removeSocket(r.Address)
			return removeUnder(cfg.stateDir, r.Path)
		case resShim:
			if r.Proc.Pid != os.Getpid() && r.Proc.Pid > 0 && !r.Proc.stop(ctx, 0) {
				return fmt.Errorf("cci shim %d still runs", r.Proc.Pid)
			}
			removeSocket(r.Address)
			return nil
		case resTask:
			return cfg.deleteTask(ctx, r)
		case resMounts:
			if !within(cfg.stateDir, r.Path) && !within(cfg.volumeDir, r.Path) {
				return fmt.Errorf("refusing to release %s outside %s and %s", r.Path, cfg.stateDir, cfg.volumeDir)
			}
			return unmountAll(r.Path)
		case resDir:
			return removeUnder(cfg.stateDir, r.Path)
		case resVolumes:
			if !within(cfg.volumeDir, r.Path) {
				return fmt.Errorf("refusing to release %s outside %s", r.Path, cfg.volumeDir)
			}
			return sandbox.Cleanup(r.Path)
		case resGPU:
			if _, err := os.Stat(cfg.gpu.LedgerPath()); errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return gpu.NewLedger(cfg.gpu, nil).Release(r.Key)
		case resLogs:
			drainLogsAfterCrash(ctx, r.Path, cfg.spoolDir)
			return nil
		case resThrottle:
			var major, minor int64
			if _, err := fmt.Sscanf(r.Key, "%d:%d", &major, &minor); err != nil {
				return fmt.Errorf("throttle record %q: %w", r.Key, err)
			}
			return clearDeviceLimits(r.Path, major, minor)
		case resCgroup:
			if !sandbox.OwnedCgroupParent(r.Path) {
				return fmt.Errorf("refusing to remove cgroup %s: not one the shim chose", r.Path)
			}
			return sandbox.RemoveCgroup(r.Path)
		case resPodLimits:
			return restorePodLimits(r)
		case resRootfs:
			return nil // the loop device was attached with autoclear by the dead process
		}
		return fmt.Errorf("unknown resource kind %q", r.Kind)
	}
}

// restorePodLimits gives kubelet's pod cgroup its caps back, unless the
// cgroup is gone (kubelet removed it with the pod, before or while this
// runs) or no longer has the caps the shim set (another sandbox of the pod
// raised it since).
func restorePodLimits(r resource) error {
	if r.Limits == nil || !strings.Contains(r.Path, "kubepods") {
		return fmt.Errorf("pod limits record %s: not kubelet's pod cgroup", r)
	}
	cur, err := sandbox.ReadCgroupLimits(r.Path)
	if errors.Is(err, os.ErrNotExist) || err == nil && cur != r.Limits.Set {
		return nil
	}
	if err != nil {
		return err
	}
	if err := sandbox.WriteCgroupLimits(r.Path, r.Limits.Was); !cgroupGone(err) {
		return err
	}
	return nil // removed since it was read
}

// releaseEnv is what releasing a recorded resource needs to know.
type releaseEnv struct {
	stateDir, volumeDir string
	spoolDir            string // where undelivered pod logs wait
	gpu                 gpu.Config
	deleteTask          func(context.Context, resource) error
}

// within reports whether p is dir or below it: records are only ever
// released inside the directories this node config gives the shim.
func within(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && filepath.IsAbs(p) && rel != ".." && !strings.HasPrefix(rel, "../")
}

func removeUnder(dir, p string) error {
	if p == "" {
		return nil
	}
	if !within(dir, p) {
		return fmt.Errorf("refusing to remove %s outside %s", p, dir)
	}
	return os.RemoveAll(p)
}

// unmountAll detaches every mount at or under dir (a bundle's rootfs, a
// container's pinned sources) and removes dir. A dir whose mounts were
// already released with their mount points (a started container's pins) is
// empty or gone, and is removed without reading the host's mount table,
// whose size grows with every pod on the node: rmdir never removes through
// a mount, so a dir that still holds anything takes the full path.
func unmountAll(dir string) error {
	if err := os.Remove(dir); err == nil || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := mount.UnmountRecursive(dir, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmounting %s: %w", dir, err)
	}
	return os.RemoveAll(dir)
}

// taskGone treats a task the backend no longer knows as deleted.
func taskGone(err error) error {
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	return err
}
