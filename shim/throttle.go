package shim

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cci-shim/cci-shim/iothrottle"
	"github.com/cci-shim/cci-shim/sandbox"
	"github.com/cci-shim/cci-shim/sandbox/backend"
)

// rootfsThrottle is a container's throttled rootfs device (R8).
type rootfsThrottle struct {
	dev        *iothrottle.BlockDevice
	limits     iothrottle.DeviceLimits
	burst      iothrottle.StartBurst
	cgroupPath string                   // the cgroup the limits are in: the container's or the sandbox's
	watch      *iothrottle.BurstWatcher // writes the limits into cgroupPath; nil when the spec carries them

	// counters are the device's counters in cgroupPath for the stats file,
	// opened once the task exists; nil where they could not be.
	counters atomic.Pointer[iothrottle.DeviceCounters]
}

// openCounters opens the device's counters in the throttle's cgroup, once
// the task exists (a runc container's cgroup is made with it). A cgroup the
// shim cannot read leaves the stats file without the device's I/O; it does
// not fail the container.
func (t *rootfsThrottle) openCounters(ctx context.Context) {
	if t == nil {
		return
	}
	d, err := iothrottle.OpenDeviceCounters(t.cgroupPath, t.dev.Major, t.dev.Minor)
	if err != nil {
		log.G(ctx).WithError(err).Warn("rootfs I/O counters unreadable; the stats file goes without them")
		return
	}
	t.counters.Store(d)
}

// io reads the device's I/O counters in the throttle's cgroup.
func (t *rootfsThrottle) io() (iothrottle.DeviceIOStats, error) {
	d := t.counters.Load()
	if d == nil {
		return iothrottle.DeviceIOStats{}, fs.ErrNotExist
	}
	return d.Read()
}

// throttleRootfs finds the container's rootfs block device, attaching the
// loop device of a blockfile snapshot itself so that it knows the device,
// and limits it where the adapter says the pod's I/O happens: in the
// container's cgroup, through its spec (runc), or in the sandbox's host
// cgroup once the task exists (applyHostThrottle; gVisor and Kata, whose
// sandbox processes do every container's I/O). A rootfs that is not a block
// device (overlayfs) cannot be throttled by device and is refused.
//
// With a start burst the device starts unlimited and a watcher writes the
// limits into the cgroup once the burst is spent (watchRootfs), wherever
// they go. Where each container's own cgroup is throttled (runc), a CRI
// sandbox's container is the pause process alone, which loads nothing: it
// gets its limits at once, and no watcher polls for it.
func (s *service) throttleRootfs(ctx context.Context, c *container, pod *sandbox.Pod, rootfs []*types.Mount, limits iothrottle.Limits) ([]*types.Mount, error) {
	dev, err := iothrottle.RootfsDevice(rootfs)
	if errors.Is(err, iothrottle.ErrNoBlockDevice) {
		// R7/R8 fail closed: a rootfs the throttle cannot hold is refused,
		// not run unthrottled.
		return nil, fmt.Errorf("container %q: rootfs is not a block device (%v); allowed: a block-device rootfs from the devmapper or blockfile snapshotter (R7, R8): %w",
			c.name, err, errdefs.ErrFailedPrecondition)
	}
	if err != nil {
		return nil, fmt.Errorf("finding rootfs block device: %w", err)
	}
	if err := s.cfg.Rootfs.CheckDevice(dev.Path, blockDeviceSize(dev), s.cfgPath); err != nil {
		dev.Close()
		return nil, fmt.Errorf("%w: %w", err, errdefs.ErrFailedPrecondition)
	}
	t := &rootfsThrottle{dev: dev, limits: limits.Rootfs, burst: limits.RootfsBurst}
	if err := s.owner.add(resource{Kind: resRootfs, Container: c.id, Path: dev.Path},
		func(context.Context) error { return errors.Join(t.counters.Load().Close(), dev.Close()) }); err != nil {
		dev.Close()
		return nil, err
	}
	switch s.traits.RootfsThrottle {
	case backend.ThrottleContainer:
		if pod.Type == sandbox.TypeSandbox {
			t.burst = iothrottle.StartBurst{}
		}
		if c.spec.Linux != nil {
			t.cgroupPath = c.spec.Linux.CgroupsPath
		}
		inSpec := t.limits
		if t.burst.Enabled() {
			inSpec = iothrottle.DeviceLimits{} // the watcher writes them after the burst
		}
		iothrottle.ApplyToSpec(c.spec, dev.Major, dev.Minor, inSpec)
	case backend.ThrottleSandbox:
		t.cgroupPath = s.sandboxCgroup(c.spec)
	}
	mounts := dev.Mounts
	// On cgroup v1 a sandbox's buffered writes (gVisor's gofer) reach the
	// device as writeback, which no blkio limit charges: the adapter asks
	// for a rootfs mounted sync, so that they are issued, and throttled, in
	// the sandbox's cgroup.
	if s.traits.RootfsSyncWrites && cgroups.Mode() != cgroups.Unified {
		mounts = backend.SyncMounts(mounts)
	}
	c.rootfs = t
	log.G(ctx).WithField("device", fmt.Sprintf("%s (%d:%d)", dev.Path, dev.Major, dev.Minor)).
		WithField("limits", fmt.Sprintf("%+v", t.limits)).WithField("burst", fmt.Sprintf("%+v", t.burst)).
		WithField("cgroup", t.cgroupPath).Info("rootfs throttled")
	return mounts, nil
}

// sandboxCgroup returns the host cgroup of the pod's sandbox: the cgroup of
// the pod's first container (the CRI sandbox, or a standalone container),
// remembered for the pod's later containers.
func (s *service) sandboxCgroup(spec *specs.Spec) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sandboxCgroupPath == "" && spec.Linux != nil {
		s.sandboxCgroupPath = spec.Linux.CgroupsPath
	}
	return s.sandboxCgroupPath
}

// watchRootfs writes the container's rootfs limits into the host cgroup
// that holds the pod's I/O — at once, or once the start burst is spent —
// unless the container's spec already carries them (runc, no burst). The
// limits are recorded with the owner, which clears them when the container
// goes (the device number is reused by the next pod).
func (s *service) watchRootfs(ctx context.Context, c *container) error {
	t := c.rootfs
	if t == nil || s.traits.RootfsThrottle == backend.ThrottleContainer && !t.burst.Enabled() {
		return nil
	}
	if t.cgroupPath == "" {
		return fmt.Errorf("rootfs throttle: the %s backend throttles in a cgroup, but the container has no cgroup path: %w",
			s.adapter.Kind(), errdefs.ErrFailedPrecondition)
	}
	key := fmt.Sprintf("%d:%d", t.dev.Major, t.dev.Minor)
	release := func(context.Context) error {
		t.watch.Close()
		return clearDeviceLimits(t.cgroupPath, t.dev.Major, t.dev.Minor)
	}
	if err := s.owner.add(resource{Kind: resThrottle, Container: c.id, Path: t.cgroupPath, Key: key}, release); err != nil {
		return err
	}
	logger := log.G(ctx).WithField(fieldID, c.id)
	w, err := iothrottle.WatchBurst(t.cgroupPath, t.dev.Major, t.dev.Minor, t.limits, t.burst, func(e iothrottle.BurstEnd) {
		logger.WithField("reason", e.Reason).WithField("after", e.After).WithField("used", fmt.Sprintf("%+v", e.Used)).
			WithError(e.Err).Info("rootfs start burst ended")
	})
	if err != nil {
		return fmt.Errorf("throttling the rootfs in cgroup %s: %w: %w", t.cgroupPath, err, errdefs.ErrFailedPrecondition)
	}
	t.watch = w
	return nil
}

// clearDeviceLimits removes a device's limits from a cgroup; a cgroup that
// is gone (it went with its container or sandbox) holds none.
func clearDeviceLimits(cgroupPath string, major, minor int64) error {
	err := iothrottle.ApplyToCgroup(cgroupPath, major, minor, iothrottle.DeviceLimits{})
	if cgroupGone(err) {
		return nil
	}
	return err
}

// cgroupGone reports whether a write into a cgroup failed because the
// cgroup is gone; the writers report ENODEV (removed while the file was
// open) as not existing too (cgroupfile.Removed).
func cgroupGone(err error) bool {
	return errors.Is(err, os.ErrNotExist)
}

// blockDeviceSize is the device's size in bytes (sysfs counts 512-byte
// sectors whatever the device's block size), or -1.
func blockDeviceSize(dev *iothrottle.BlockDevice) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/size", dev.Major, dev.Minor))
	if err != nil {
		return -1
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return -1
	}
	return n * 512
}
