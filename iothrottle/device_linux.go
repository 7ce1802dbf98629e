package iothrottle

import (
	"fmt"
	"slices"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/core/mount"
	"golang.org/x/sys/unix"
)

// RootfsDevice finds the block device of a container rootfs given as
// containerd mounts. A single mount whose source is a block device
// (devmapper thin device, or a loop device containerd attached) is returned
// as is. A single mount with the "loop" option (blockfile snapshotter) gets
// its file attached to a new loop device (autoclear; read-only with "ro") and
// is rewritten to mount that device. Anything else yields ErrNoBlockDevice.
// The caller must Close the result when the container is gone.
func RootfsDevice(mounts []*types.Mount) (*BlockDevice, error) {
	if len(mounts) != 1 || mounts[0] == nil {
		return nil, fmt.Errorf("%d rootfs mounts: %w", len(mounts), ErrNoBlockDevice)
	}
	m := mounts[0]
	if m.Source == "" {
		return nil, fmt.Errorf("rootfs mount type %q without source: %w", m.Type, ErrNoBlockDevice)
	}
	if slices.Contains(m.Options, "loop") {
		return attachLoop(m)
	}
	var st unix.Stat_t
	if err := unix.Stat(m.Source, &st); err != nil {
		if isVirtualFS(m.Type) {
			return nil, fmt.Errorf("rootfs mount type %q: %w", m.Type, ErrNoBlockDevice)
		}
		return nil, fmt.Errorf("stat rootfs source %s: %w", m.Source, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return nil, fmt.Errorf("rootfs source %s (type %q) is not a block device: %w", m.Source, m.Type, ErrNoBlockDevice)
	}
	return &BlockDevice{
		Mounts: []*types.Mount{copyMount(m, m.Source, m.Options)},
		Path:   m.Source,
		Major:  int64(unix.Major(uint64(st.Rdev))),
		Minor:  int64(unix.Minor(uint64(st.Rdev))),
	}, nil
}

func attachLoop(m *types.Mount) (*BlockDevice, error) {
	opts := slices.DeleteFunc(slices.Clone(m.Options), func(o string) bool { return o == "loop" })
	f, err := mount.SetupLoop(m.Source, mount.LoopParams{
		Readonly:  slices.Contains(opts, "ro"),
		Autoclear: true,
	})
	if err != nil {
		return nil, fmt.Errorf("attach loop device for %s: %w", m.Source, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("stat loop device %s: %w", f.Name(), err)
	}
	return &BlockDevice{
		Mounts:   []*types.Mount{copyMount(m, f.Name(), opts)},
		Path:     f.Name(),
		Major:    int64(unix.Major(uint64(st.Rdev))),
		Minor:    int64(unix.Minor(uint64(st.Rdev))),
		Attached: true,
		loop:     f,
	}, nil
}

func copyMount(m *types.Mount, source string, opts []string) *types.Mount {
	return &types.Mount{
		Type:    m.Type,
		Source:  source,
		Target:  m.Target,
		Options: slices.Clone(opts),
	}
}

// isVirtualFS reports mount types whose source is a label, not a path.
func isVirtualFS(typ string) bool {
	switch typ {
	case "overlay", "tmpfs", "proc", "sysfs", "bind", "rbind", "fuse-overlayfs":
		return true
	}
	return false
}
