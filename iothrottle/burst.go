package iothrottle

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// The start burst of the rootfs throttle (SPEC R8, beyond): a pod's rootfs
// device starts unthrottled; once its I/O since the watch began reaches
// Bytes (read+write) or Ops (read+write operations), or Window has passed,
// the device limits of R8 are written and hold from then on. It is the
// one_time_burst of Firecracker's and Cloud Hypervisor's token buckets,
// built on the host cgroup's counters because blkio and io.max have no
// burst of their own.
//
// Defaults: 1 GB and 100,000 operations within 60 s of the container's
// start. Budgets are per rootfs device, i.e. per container: each container
// of a pod has its own rootfs snapshot and so its own device.
const (
	DefaultRootfsBurstBytes  = 1_000_000_000
	DefaultRootfsBurstOps    = 100_000
	DefaultRootfsBurstWindow = 60 * time.Second
	// MaxRootfsBurstWindow bounds the window a node may configure: the
	// watcher's timer runs at most this long.
	MaxRootfsBurstWindow = 24 * time.Hour
)

// Pod annotations that may LOWER the node's start burst. Values are
// decimal integers >= 0; 0 turns the burst off for the pod.
const (
	AnnotationRootfsBurstBytes   = AnnotationPrefix + "rootfs-burst-bytes"
	AnnotationRootfsBurstOps     = AnnotationPrefix + "rootfs-burst-ops"
	AnnotationRootfsBurstSeconds = AnnotationPrefix + "rootfs-burst-seconds"
)

// StartBurst is a rootfs device's start budget. The burst is on only when
// all three fields are positive; any 0 turns it off (R8 from the first
// byte, as without a burst).
type StartBurst struct {
	// Bytes is the read+write budget at full speed.
	Bytes uint64 `json:"bytes"`
	// Ops is the read+write operation budget at full speed.
	Ops uint64 `json:"ops"`
	// Window ends the burst this long after the watch began, whatever is
	// left of the budget. It bounds the life of the watcher's timer.
	Window time.Duration `json:"window_ns"`
}

// Enabled reports whether the burst is on.
func (b StartBurst) Enabled() bool { return b.Bytes > 0 && b.Ops > 0 && b.Window > 0 }

// DefaultStartBurst returns the documented default budget.
func DefaultStartBurst() StartBurst {
	return StartBurst{Bytes: DefaultRootfsBurstBytes, Ops: DefaultRootfsBurstOps, Window: DefaultRootfsBurstWindow}
}

// StartBurstFromConfig builds a node's burst from its configuration keys
// (throttle.rootfs_burst_bytes, rootfs_burst_ops, rootfs_burst_seconds),
// refusing a window longer than MaxRootfsBurstWindow.
func StartBurstFromConfig(bytes, ops, seconds uint64) (StartBurst, error) {
	if seconds > uint64(MaxRootfsBurstWindow/time.Second) {
		return StartBurst{}, fmt.Errorf("throttle.rootfs_burst_seconds %d: at most %d (0 turns the burst off)",
			seconds, uint64(MaxRootfsBurstWindow/time.Second))
	}
	return StartBurst{Bytes: bytes, Ops: ops, Window: time.Duration(seconds) * time.Second}, nil
}

func (b StartBurst) validate() error {
	if b.Window < 0 || b.Window > MaxRootfsBurstWindow {
		return fmt.Errorf("node rootfs burst window %v: want 0 (off) to %v", b.Window, MaxRootfsBurstWindow)
	}
	return nil
}

// lowerBurst applies one burst annotation to b, which started as node's
// burst. Unlike the rate limits, where 0 means unlimited, 0 is the lowest
// burst (off), so it is allowed; anything above the node's value is
// refused.
func lowerBurst(b *StartBurst, node StartBurst, key, value string) error {
	want, err := strconv.ParseUint(strings.TrimSpace(value), 10, 64)
	if err != nil {
		return fmt.Errorf("annotation %q=%q: want an integer >= 0 (0 turns the start burst off); the burst is node-configured and may only be lowered", key, value)
	}
	var cur uint64
	if node.Enabled() { // a node without a burst has nothing to lower
		switch key {
		case AnnotationRootfsBurstBytes:
			cur = node.Bytes
		case AnnotationRootfsBurstOps:
			cur = node.Ops
		case AnnotationRootfsBurstSeconds:
			cur = uint64(node.Window / time.Second)
		}
	}
	if want > cur {
		return fmt.Errorf("annotation %q=%q: exceeds the node's start burst %d; allowed: 0 to %d (the burst is node-configured and may only be lowered)",
			key, value, cur, cur)
	}
	switch key {
	case AnnotationRootfsBurstBytes:
		b.Bytes = want
	case AnnotationRootfsBurstOps:
		b.Ops = want
	case AnnotationRootfsBurstSeconds:
		b.Window = time.Duration(want) * time.Second
	}
	return nil
}

func isBurstAnnotation(k string) bool {
	return k == AnnotationRootfsBurstBytes || k == AnnotationRootfsBurstOps || k == AnnotationRootfsBurstSeconds
}

// Burst end reasons (BurstEnd.Reason).
const (
	BurstEndBytes  = "bytes"  // the byte budget was spent
	BurstEndOps    = "ops"    // the operation budget was spent
	BurstEndWindow = "window" // the window passed first
	BurstEndOff    = "off"    // no burst: the limits were written at once
	BurstEndError  = "error"  // the counters or the limits could not be read or written
)

// BurstEnd is how a start burst ended.
type BurstEnd struct {
	Reason string `json:"reason"`
	// Used is the device's I/O from the start of the watch to the look
	// that ended the burst; beyond the budget it is the overshoot of the
	// polling (at most the device's speed times the wait between looks).
	Used DeviceIOStats `json:"used"`
	// After is the time from the start of the watch to the switch.
	After time.Duration `json:"after_ns"`
	// Err is set when Reason is BurstEndError.
	Err error `json:"-"`
}

// Overshoot returns how far Used went past the budget that ended the
// burst: bytes for BurstEndBytes, operations for BurstEndOps, else 0.
func (e BurstEnd) Overshoot(b StartBurst) uint64 {
	switch e.Reason {
	case BurstEndBytes:
		return sub(e.Used.ReadBytes+e.Used.WriteBytes, b.Bytes)
	case BurstEndOps:
		return sub(e.Used.ReadIOs+e.Used.WriteIOs, b.Ops)
	}
	return 0
}

// BurstStatus is a snapshot of a start burst, for the pod's stats.
type BurstStatus struct {
	Budget StartBurst `json:"budget"`
	// Active is true while the device runs at full speed.
	Active bool `json:"active"`
	// Used is the I/O since the watch began, at the last look.
	Used DeviceIOStats `json:"used"`
	// Pace is set while the idle device is paced (burstPace).
	Pace *DeviceLimits `json:"pace,omitempty"`
	// End is set once the limits hold.
	End *BurstEnd `json:"end,omitempty"`
}

// Polling of the counters: the first look comes burstMinPoll after the
// watch starts; a look that saw no I/O doubles the wait (up to
// burstMaxPoll), a look that saw I/O waits half the time the budget would
// last at the rate just seen (at least burstMinPoll). A device spending
// its budget at rate r overshoots by about r*burstMinPoll, or
// r*burstMaxPoll when it goes from idle to flat out.
//
// An idle device is paced rather than watched closely. Looks four times a
// second for the whole window were most of an idle shim's CPU (each look
// wakes the Go runtime's timer and sysmon threads; dear on a PVM guest).
// So when a look would wait burstMaxPoll and the budget would last at
// least eight paced waits at the rate just seen, the watcher writes a pace
// (burstPace): limits under which the device passes at most the budget
// left in the next wait, half of it each way, never below R8's limits. It
// then waits twice as long, up to burstPacedMaxPoll. A look
// that finds the device busier lifts the pace and looks again after
// burstMinPoll, at full speed. So an idle device costs about one look in
// two seconds; going from idle to flat out it overshoots by nothing (the
// pace holds it to the budget left), and runs at the pace (at least
// left/(2*burstPacedMaxPoll) each way: 250 MB/s with 1 GB left) for at
// most one wait before it runs at full speed.
const (
	burstMinPoll      = 10 * time.Millisecond
	burstMaxPoll      = 250 * time.Millisecond
	burstPacedMaxPoll = 2 * time.Second
)

// nextBurstPoll returns the wait before the next look, given the previous
// wait, the budget, the I/O used so far and the I/O seen in the last dt.
func nextBurstPoll(prev time.Duration, b StartBurst, used, delta DeviceIOStats, dt time.Duration) time.Duration {
	db, do := delta.ReadBytes+delta.WriteBytes, delta.ReadIOs+delta.WriteIOs
	if (db == 0 && do == 0) || dt <= 0 {
		return min(max(2*prev, burstMinPoll), burstMaxPoll)
	}
	last := min(budgetLasts(b, used, delta, dt), float64(2*burstMaxPoll))
	return min(max(time.Duration(last/2), burstMinPoll), burstMaxPoll)
}

// budgetLasts returns how long (ns) what is left of the budget lasts at the
// rate of delta over dt; +Inf when delta is none.
func budgetLasts(b StartBurst, used, delta DeviceIOStats, dt time.Duration) float64 {
	db, do := delta.ReadBytes+delta.WriteBytes, delta.ReadIOs+delta.WriteIOs
	last := math.Inf(1)
	if dt <= 0 {
		return last
	}
	if db > 0 {
		left := float64(sub(b.Bytes, used.ReadBytes+used.WriteBytes))
		last = min(last, left/float64(db)*float64(dt))
	}
	if do > 0 {
		left := float64(sub(b.Ops, used.ReadIOs+used.WriteIOs))
		last = min(last, left/float64(do)*float64(dt))
	}
	return last
}

// pacedBurstWait returns the wait of a paced look after one that waited
// prev and saw delta in dt, or 0 when the device is too busy to be paced:
// the budget must last eight paced waits at the rate seen, and a paced
// wait is at least twice burstMaxPoll.
func pacedBurstWait(prev time.Duration, b StartBurst, used, delta DeviceIOStats, dt time.Duration) time.Duration {
	w := min(max(2*prev, 2*burstMaxPoll), burstPacedMaxPoll)
	w = min(w, time.Duration(min(budgetLasts(b, used, delta, dt)/8, float64(burstPacedMaxPoll))))
	if w < 2*burstMaxPoll {
		return 0
	}
	return w
}

// burstPace returns the limits under which the device passes at most what
// is left of the budget in wait: half of the bytes and operations left
// each way, but never less than the limits after the burst (r8), and no
// limit in a direction r8 leaves unlimited.
func burstPace(b StartBurst, used DeviceIOStats, wait time.Duration, r8 DeviceLimits) DeviceLimits {
	per := 2 * wait.Seconds()
	bps := max(uint64(float64(sub(b.Bytes, used.ReadBytes+used.WriteBytes))/per), 1)
	iops := max(uint64(float64(sub(b.Ops, used.ReadIOs+used.WriteIOs))/per), 1)
	pace := func(v, floor uint64) uint64 {
		if floor == 0 {
			return 0
		}
		return max(v, floor)
	}
	return DeviceLimits{ReadBps: pace(bps, r8.ReadBps), WriteBps: pace(bps, r8.WriteBps),
		ReadIOPS: pace(iops, r8.ReadIOPS), WriteIOPS: pace(iops, r8.WriteIOPS)}
}

// burstSpent reports why the burst ends at this look ("" while it goes on).
func burstSpent(b StartBurst, used DeviceIOStats, elapsed time.Duration) string {
	switch {
	case used.ReadBytes+used.WriteBytes >= b.Bytes:
		return BurstEndBytes
	case used.ReadIOs+used.WriteIOs >= b.Ops:
		return BurstEndOps
	case elapsed >= b.Window:
		return BurstEndWindow
	}
	return ""
}

// since returns s - base per counter, 0 where a counter went backwards (a
// device's statistics recreated in the cgroup).
func (s DeviceIOStats) since(base DeviceIOStats) DeviceIOStats {
	return DeviceIOStats{
		ReadBytes: sub(s.ReadBytes, base.ReadBytes), WriteBytes: sub(s.WriteBytes, base.WriteBytes),
		ReadIOs: sub(s.ReadIOs, base.ReadIOs), WriteIOs: sub(s.WriteIOs, base.WriteIOs),
	}
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// KataDiskBurstConfig renders the one-time-burst lines of Kata's
// [hypervisor.clh] section for b, to go with KataDiskRateLimiterConfig:
// Cloud Hypervisor's token buckets take a one_time_burst that is spent
// before the rate applies and never refills. Its buckets are shared by
// reads and writes, like b's budget; the bandwidth burst is in bits (Kata
// divides by 8). CLH's burst has no window, so the host cgroup's watcher
// (WatchBurst on the sandbox cgroup) still ends the burst at b.Window. An
// off burst renders zeros (no burst).
func KataDiskBurstConfig(b StartBurst) string {
	var bits, ops uint64
	if b.Enabled() && b.Bytes <= 1<<59 && b.Ops <= 1<<62 { // fits Kata's int64 after *8
		bits, ops = b.Bytes*8, b.Ops
	}
	return fmt.Sprintf("disk_rate_limiter_bw_one_time_burst = %d\ndisk_rate_limiter_ops_one_time_burst = %d\n", bits, ops)
}
