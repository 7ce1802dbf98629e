package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cci-shim/cci-shim/iothrottle"
	"github.com/cci-shim/cci-shim/sandbox/backend"
	"github.com/cci-shim/cci-shim/shim/podstats"
)

// statsInterval is how often the pod's stats file is rewritten.
const statsInterval = time.Second

// rootfsThrottle is a container's throttled rootfs device (R8).
type rootfsThrottle struct {
	dev        *iothrottle.BlockDevice
	limits     iothrottle.DeviceLimits
	cgroupPath string
}

// throttleRootfs finds the container's rootfs block device, attaching the
// loop device of a blockfile snapshot itself so that it knows the device,
// and limits it. runc gets the limit in the container's spec; for Kata the
// VMM does the I/O, so the limit goes on the sandbox cgroup once it exists
// (applyHostThrottle). A rootfs that is not a block device (overlayfs on a
// development host) cannot be throttled by device: that is logged.
func (s *service) throttleRootfs(ctx context.Context, spec *specs.Spec, rootfs []*types.Mount, limits iothrottle.DeviceLimits) ([]*types.Mount, *rootfsThrottle, error) {
	if len(rootfs) == 0 {
		return rootfs, nil, nil
	}
	dev, err := iothrottle.RootfsDevice(rootfs)
	if errors.Is(err, iothrottle.ErrNoBlockDevice) {
		log.G(ctx).WithError(err).Warn("rootfs is not a block device: the rootfs throttle does not apply")
		return rootfs, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("finding rootfs block device: %w", err)
	}
	t := &rootfsThrottle{dev: dev, limits: limits}
	if spec.Linux != nil {
		t.cgroupPath = spec.Linux.CgroupsPath
	}
	traits := s.adapter.Traits()
	switch traits.RootfsThrottle {
	case backend.ThrottleContainer:
		iothrottle.ApplyToSpec(spec, dev.Major, dev.Minor, limits)
	case backend.ThrottleSandbox:
		// The sandbox's processes do every container's I/O: each
		// container's device is limited on the sandbox's cgroup.
		t.cgroupPath = s.sandboxCgroup
	}
	mounts := dev.Mounts
	if traits.RootfsSyncWrites && cgroups.Mode() != cgroups.Unified {
		mounts = backend.SyncMounts(mounts)
	}
	log.G(ctx).WithField("device", fmt.Sprintf("%s (%d:%d)", dev.Path, dev.Major, dev.Minor)).
		WithField("limits", fmt.Sprintf("%+v", limits)).WithField("cgroup", t.cgroupPath).Info("rootfs throttled")
	return mounts, t, nil
}

// applyHostThrottle limits the sandbox's I/O on its cgroup (Kata's VMM,
// gVisor's sentry and gofers): the backend-independent enforcement of R8.
func (s *service) applyHostThrottle(t *rootfsThrottle) error {
	if t == nil || s.adapter.Traits().RootfsThrottle != backend.ThrottleSandbox || t.cgroupPath == "" {
		return nil
	}
	if err := iothrottle.ApplyToCgroup(t.cgroupPath, t.dev.Major, t.dev.Minor, t.limits); err != nil {
		return fmt.Errorf("throttling the sandbox cgroup: %w: %w", err, errdefs.ErrFailedPrecondition)
	}
	return nil
}

func (t *rootfsThrottle) close() {
	if t != nil {
		t.dev.Close()
	}
}

// writeStatsLoop keeps the stats file current until ctx ends.
func (s *service) writeStatsLoop(ctx context.Context) {
	tick := time.NewTicker(statsInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.writeStats()
		}
	}
}

func (s *service) writeStats() {
	s.mu.Lock()
	out := make(map[string]podstats.Container, len(s.containers))
	for id, c := range s.containers {
		cs := podstats.Container{Stdio: c.stdio.Stats()}
		if t := c.rootfs; t != nil {
			cs.Rootfs = &podstats.Rootfs{Device: fmt.Sprintf("%d:%d", t.dev.Major, t.dev.Minor), Limits: t.limits}
			if io, err := iothrottle.DeviceStats(t.cgroupPath, t.dev.Major, t.dev.Minor); err == nil {
				cs.Rootfs.IO = &io
			}
		}
		out[id] = cs
	}
	s.mu.Unlock()
	if len(out) == 0 {
		return
	}
	doc := podstats.Pod{Time: time.Now(), Containers: out}
	if l := s.logs; l != nil {
		st := l.collector.Stats()
		doc.Logs = &st
	}
	if data, err := json.Marshal(doc); err == nil {
		writeFileAtomic(filepath.Join(s.podDir, podstats.File), data)
	}
}
