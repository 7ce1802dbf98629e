// Package logfwd is the pod file-log collector (SPEC R15-R20): it tails the
// log files a pod declares in the logs.cci.io/policies annotation, on the
// host side of the pod's log volume, and forwards every line exactly once to
// a local JSON-lines file or to a Fluent Bit/Fluentd endpoint (Fluent Forward
// protocol).
//
// What it does:
//   - parses and validates the tenant's policy annotation (ParsePolicies);
//   - maps each declared container directory to a host directory (HostDir)
//     that the shim bind-mounts (or shares into the VM) at the container path;
//   - discovers files by polling (R16, every 5 s by default) and by inotify
//     (fsnotify) so that files living only milliseconds are still read;
//   - identifies a file by device/inode plus a checksum of its first bytes
//     (R17), so renames, rename-and-create, copytruncate, truncation and inode
//     reuse neither lose nor repeat lines;
//   - splits or drops lines over 250 KiB (R19) and skips file names over 190
//     bytes, counting both;
//   - removes NUL bytes and skips holes, so a sparse file cannot make the
//     sink grow beyond what the tenant really stores (nul.go);
//   - persists offsets crash-safely (write, fsync, rename) only after the sink
//     has accepted the records (R18); the file sink is cut back to the
//     checkpoint's position at a start, so nothing is repeated either;
//   - opens every file confined beneath the log directory (openat2 with
//     RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, O_NOFOLLOW walking as fallback) and
//     reads only regular files (R20);
//   - names a pod's file sink from containerd's namespace and sandbox id
//     only (SinkFileName) and opens it confined beneath the sink directory;
//   - stops within a deadline: Drain gives up when its context is done
//     (destination down or slow) and leaves what it could not deliver to
//     the next start (ErrNotDrained);
//   - offers MeasureThroughput and MeasureLatency to the bench.
//
// What it is not for: it does not talk to containerd, set up mounts, expose
// Prometheus metrics (Stats returns a plain snapshot for the node agent) or
// collect stdout/stderr (that is the shim's stdio path, R14).
//
// Hand-written parts and why: the Fluent Forward encoder. fluent-bit-go only
// ships the cgo decoder used inside Fluent Bit output plugins (no encoder, and
// it needs cgo), so records are encoded with vmihailenco/msgpack/v5, writing
// the EventTime extension (type 0) header by hand instead of registering a
// global extension type.
//
// Concurrency: a Collector runs one goroutine (Run) that owns all file state
// and holds the collector lock for one cycle at a time. Drain, UpdateWatches
// and Close take the same lock, preempting Run's cycle (which rolls back
// what it read but did not deliver) so that none of them waits on a
// delivery being retried. Run's checkpoints are written by a background
// writer, outside the lock. Stats may be called at any time.
package logfwd
