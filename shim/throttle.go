package shim

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cci-shim/cci-shim/iothrottle"
	"github.com/cci-shim/cci-shim/sandbox/backend"
)

// rootfsThrottle is a container's throttled rootfs device (R8).
type rootfsThrottle struct {
	dev        *iothrottle.BlockDevice
	limits     iothrottle.DeviceLimits
	cgroupPath string // the cgroup the limits are in: the container's or the sandbox's
}

// throttleRootfs finds the container's rootfs block device, attaching the
// loop device of a blockfile snapshot itself so that it knows the device,
// and limits it where the adapter says the pod's I/O happens: in the
// container's cgroup, through its spec (runc), or in the sandbox's host
// cgroup once the task exists (applyHostThrottle; gVisor and Kata, whose
// sandbox processes do every container's I/O). A rootfs that is not a block
// device (overlayfs on a development host) cannot be throttled by device:
// that is logged.
func (s *service) throttleRootfs(ctx context.Context, c *container, rootfs []*types.Mount, limits iothrottle.DeviceLimits) ([]*types.Mount, error) {
	if len(rootfs) == 0 {
		return rootfs, nil
	}
	dev, err := iothrottle.RootfsDevice(rootfs)
	if errors.Is(err, iothrottle.ErrNoBlockDevice) {
		log.G(ctx).WithError(err).Warn("rootfs is not a block device: the rootfs throttle does not apply")
		return rootfs, nil
	}
	if err != nil {
		return nil, fmt.Errorf("finding rootfs block device: %w", err)
	}
	if err := s.owner.add(resource{Kind: resRootfs, Container: c.id, Path: dev.Path},
		func(context.Context) error { return dev.Close() }); err != nil {
		dev.Close()
		return nil, err
	}
	t := &rootfsThrottle{dev: dev, limits: limits}
	switch s.traits.RootfsThrottle {
	case backend.ThrottleContainer:
		if c.spec.Linux != nil {
			t.cgroupPath = c.spec.Linux.CgroupsPath
		}
		iothrottle.ApplyToSpec(c.spec, dev.Major, dev.Minor, limits)
	case backend.ThrottleSandbox:
		t.cgroupPath = s.sandboxCgroup(c.spec)
	}
	c.rootfs = t
	log.G(ctx).WithField("device", fmt.Sprintf("%s (%d:%d)", dev.Path, dev.Major, dev.Minor)).
		WithField("limits", fmt.Sprintf("%+v", limits)).WithField("cgroup", t.cgroupPath).Info("rootfs throttled")
	return dev.Mounts, nil
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

// applyHostThrottle writes the container's rootfs limits into the sandbox's
// host cgroup when the adapter puts them there, recording them so that the
// container's teardown clears them again (the device number is reused).
func (s *service) applyHostThrottle(ctx context.Context, c *container) error {
	t := c.rootfs
	if t == nil || s.traits.RootfsThrottle != backend.ThrottleSandbox {
		return nil
	}
	if t.cgroupPath == "" {
		return fmt.Errorf("rootfs throttle: the %s backend throttles the sandbox's cgroup, but the pod has no cgroup path: %w",
			s.adapter.Kind(), errdefs.ErrFailedPrecondition)
	}
	key := fmt.Sprintf("%d:%d", t.dev.Major, t.dev.Minor)
	clear := func(context.Context) error {
		return iothrottle.ApplyToCgroup(t.cgroupPath, t.dev.Major, t.dev.Minor, iothrottle.DeviceLimits{})
	}
	if err := s.owner.add(resource{Kind: resThrottle, Container: c.id, Path: t.cgroupPath, Key: key}, clear); err != nil {
		return err
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
