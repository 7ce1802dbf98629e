// Package bench is cci-shim's bench harness (SPEC R23). Every figure is a
// ratio against a baseline measured in the same run, never an absolute
// timing asserted in a unit test:
//
//   - stdout: throughput against containerd's runc shim, and the lossless
//     1 MB/s stdio throttle (R14);
//   - rootfs: the 6 MB/s and 1000 IOPS rootfs throttle against an
//     unthrottled volume (R8), with the start burst off;
//   - start: pod start latency through runc and cci (throttles off, the
//     default node config, the start burst off and on);
//   - density: N pods through CRI, P at a time, for the runc handler, cci
//     and cci with the gVisor backend: time to all running, per-pod
//     p50/p99, PSS and CPU per pod of every host process under the shims;
//   - logs: logfwd's collector (the one the shim runs per pod) through its
//     public API: throughput per CPU second, write->sink latency with
//     inotify and poll only, loss and duplication across rotation styles
//     and SIGKILLs of a collector process;
//   - burst: iothrottle's start burst on a loop device and a blkio cgroup:
//     how it ends, the polling's overshoot, R8's rate after it.
//
// The container benches bring up a private containerd with tests/e2eenv;
// logs and burst need no containerd. cmd/ccibench is the command line
// (Main); tests/throttle_test.go calls the same functions and asserts on
// their results, so there is one implementation of each measurement.
// Reports are Markdown with charts drawn by gonum.org/v1/plot.
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
// counters read on the host before and after each phase; memory is PSS
// from /proc/<pid>/smaps_rollup.
//
// It is not for: production code paths (it needs root, loop devices and
// the containerd binaries, like the end-to-end tests), or unit-test timing.
// It is Linux only.
package bench
