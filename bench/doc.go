// Package bench is cci-shim's bench harness (SPEC R23): it brings up a real
// containerd with tests/e2eenv, runs containers through the cci shim and
// through containerd's runc shim in the same run, and measures what the
// platform promises — stdout throughput and the lossless 1 MB/s stdio
// throttle (R14), the 6 MB/s and 1000 IOPS rootfs throttle against an
// unthrottled volume (R8), and pod start latency — as ratios against a
// baseline measured alongside, never as absolute timings asserted in a unit
// test. cmd/ccibench is its command line; tests/throttle_test.go calls the
// same functions and asserts on their results, so there is one
// implementation of each measurement.
//
// Units: rates are bytes per second and "MB" is 10^6 bytes (iothrottle's
// convention); dd's "bs=1M" is 1 MiB (2^20 bytes), and the byte counts
// reported are what was actually moved.
//
// Methods: stdout is produced with busybox cat from a host-generated file
// on an unthrottled volume, received by reading ctr's stdout, and timed
// inside the container with the shell's $EPOCHREALTIME; rootfs I/O is
// busybox dd (no fio in the image), direct I/O unless a result says
// buffered, timed inside the container, with the device's cgroup blkio
// counters read on the host before and after each phase.
//
// It is not for: production code paths (it needs root, loop devices and
// the containerd binaries, like the end-to-end tests), or unit-test timing.
// It is Linux only.
package bench
