package shm

import (
	"errors"
	"fmt"
	"os"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// HostSize returns the size (blocks × block size) of the filesystem at path
// and whether it is a tmpfs.
func HostSize(path string) (size int64, tmpfs bool, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, false, fmt.Errorf("statfs %s: %w", path, err)
	}
	return int64(st.Blocks) * st.Bsize, st.Type == unix.TMPFS_MAGIC, nil
}

// Mount makes path a tmpfs of exactly size bytes (a multiple of PageSize),
// mode 1777, nosuid, nodev, noexec. Idempotent: a tmpfs already mounted at
// path is remounted with the new size when it differs. It reports whether
// it mounted (rather than found or remounted) the tmpfs.
func Mount(path string, size int64) (mounted bool, err error) {
	if size <= 0 || size%PageSize != 0 {
		return false, fmt.Errorf("mounting shm at %s: size %d is not a positive multiple of %d", path, size, PageSize)
	}
	if err := os.MkdirAll(path, 0o700); err != nil {
		return false, fmt.Errorf("mounting shm: %w", err)
	}
	isMount, err := mountinfo.Mounted(path)
	if err != nil {
		return false, fmt.Errorf("mounting shm: %w", err)
	}
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	data := fmt.Sprintf("mode=1777,size=%d", size)
	if isMount {
		have, tmpfs, err := HostSize(path)
		if err != nil {
			return false, fmt.Errorf("mounting shm: %w", err)
		}
		if !tmpfs {
			return false, fmt.Errorf("mounting shm: %s is a mount point but not a tmpfs", path)
		}
		if have == size {
			return false, nil
		}
		if err := unix.Mount("", path, "", flags|unix.MS_REMOUNT, data); err != nil {
			return false, fmt.Errorf("resizing shm at %s to %d bytes: %w", path, size, err)
		}
		return false, nil
	}
	if err := unix.Mount("shm", path, "tmpfs", flags, data); err != nil {
		return false, fmt.Errorf("mounting shm at %s: %w", path, err)
	}
	return true, nil
}

// Unmount detaches the mount at path; a path that is not mounted or does not
// exist is not an error.
func Unmount(path string) error {
	err := unix.Unmount(path, unix.MNT_DETACH)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("unmounting %s: %w", path, err)
}
