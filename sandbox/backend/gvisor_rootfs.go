package backend

import (
	"slices"

	"github.com/containerd/containerd/api/types"
)

// SyncMounts returns copies of a block-device rootfs's mounts with the host
// mount options that make every write synchronous (RootfsSyncWrites):
// "sync", so that each write(2) the sandbox issues is written and waited
// for in the sandbox's own context, where cgroup v1's blkio throttle
// charges it (buffered writeback is charged to no one there); "lazytime",
// so that a timestamp change does not force a journal commit per write;
// and for ext4 "nobarrier", so that a commit does not flush the device's
// cache. The rootfs is scratch space that dies with the pod, so what
// nobarrier gives up (ordering across a power cut) is not needed.
//
// Measured under runsc 20221219 with 6 MB/s and 1000 IOPS on the sandbox
// cgroup (busybox dd in the sandbox): without these options 30 MB of
// oflag=direct writes took 0.49 s and 3000 4 KiB writes 0.38 s (nothing
// throttled until a sync); with "sync" alone 3000 4 KiB writes took 14 s
// (a journal commit and flush per write); with all three 3.3-3.5 s and
// 30 MB 5.5 s, one I/O per write.
func SyncMounts(mounts []*types.Mount) []*types.Mount {
	out := make([]*types.Mount, len(mounts))
	for i, m := range mounts {
		if slices.Contains([]string{"bind", "rbind", "overlay", "tmpfs"}, m.Type) {
			out[i] = m // not a block device's filesystem
			continue
		}
		opts := slices.Clone(m.Options)
		add := []string{"sync", "lazytime"}
		if m.Type == "ext4" {
			add = append(add, "nobarrier")
		}
		for _, o := range add {
			if !slices.Contains(opts, o) {
				opts = append(opts, o)
			}
		}
		out[i] = &types.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: opts}
	}
	return out
}
