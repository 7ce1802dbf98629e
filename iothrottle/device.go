package iothrottle

import (
	"errors"
	"os"

	"github.com/containerd/containerd/api/types"
)

// ErrNoBlockDevice is returned by RootfsDevice when the rootfs is not a
// single block-device mount (overlay, bind, several mounts): there is no
// device to throttle.
var ErrNoBlockDevice = errors.New("rootfs has no block device")

// BlockDevice is a pod's rootfs block device.
type BlockDevice struct {
	// Mounts are the rootfs mounts to hand on: for a blockfile snapshot
	// attached here, Source is the loop device and the "loop" option is gone.
	Mounts []*types.Mount
	// Path is the device node, e.g. /dev/loop3 or /dev/mapper/pool-snap-7.
	Path         string
	Major, Minor int64
	// Attached is true when RootfsDevice attached the loop device itself.
	Attached bool

	loop *os.File // open loop device when Attached; autoclear on last close
}

// Close releases what RootfsDevice set up: the loop device it attached is
// created with autoclear, so the kernel detaches it once this handle is
// closed and nothing mounts or holds the device any more. Close is
// idempotent and a no-op for devices it did not attach.
func (d *BlockDevice) Close() error {
	if d == nil || d.loop == nil {
		return nil
	}
	err := d.loop.Close()
	d.loop = nil
	return err
}
