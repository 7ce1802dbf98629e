// Package iothrottle implements the platform's I/O throttles (SPEC R7, R8, R14):
//
//   - the rootfs block-device throttle: finding the pod's rootfs block device
//     from containerd's rootfs mounts (devmapper thin device, or the loop
//     device of a blockfile snapshot, attached here if containerd did not),
//     and limiting its read/write bandwidth and IOPS on its major:minor,
//     either through the OCI spec (runc applies it) or directly in a sandbox
//     cgroup through github.com/containerd/cgroups/v3 (cgroup v1 blkio
//     throttle files or cgroup v2 io.max, as the host has them);
//   - the rootfs start burst (R8, beyond): WatchBurst leaves the device
//     unthrottled in its cgroup until a budget of bytes and operations is
//     spent or a window has passed, watching the cgroup's I/O counters with
//     one timer, then writes the limits (StartBurst, BurstWatcher);
//   - the rendering of Kata's Cloud Hypervisor disk rate limiter keys, its
//     one-time burst included;
//   - the lossless byte-rate limiter on a container's stdout+stderr copy path,
//     a token bucket built on golang.org/x/time/rate;
//   - the node-configured limits, which pod annotations may lower but never
//     raise.
//
// Units: every byte rate is in bytes per second and "MB" means 10^6 bytes,
// so "6 MB/s" is 6000000 and "1 MB/s" is 1000000 (the kernel's blkio and
// io.max files take bytes per second too). Kata's limiter takes bits/s.
//
// It is not for: volumes (emptyDir, PVC, log volumes) — they are not on the
// rootfs device and stay unthrottled; speaking ttrpc or to containerd (the
// shim does that and calls in here); deciding policy beyond the limits.
//
// The copy loop is hand-written rather than io.CopyBuffer because
// io.CopyBuffer bypasses the caller's buffer when the source implements
// io.WriterTo or the destination io.ReaderFrom (*os.File does both), which
// would skip the throttle's chunking.
package iothrottle
