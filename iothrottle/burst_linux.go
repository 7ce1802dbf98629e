package iothrottle

import (
	"fmt"
	"sync"
	"time"
)

// BurstWatcher runs one rootfs device's start burst in one cgroup: the
// device is unthrottled there (paced while it idles: burstPace) until its
// budget is spent or its window has passed, then it gets its limits. It
// owns one timer, no goroutine, and the cgroup's statistics files while the
// burst is on; the timer stops and the files are closed for good once the
// limits are written or Close is called.
type BurstWatcher struct {
	cg           cgroupFS
	counters     *DeviceCounters
	path         string
	major, minor int64
	limits       DeviceLimits
	budget       StartBurst
	onEnd        func(BurstEnd)
	clk          burstClock

	mu       sync.Mutex // guards the fields below
	timer    burstTimer // nil before the first look is scheduled
	began    time.Time
	base     DeviceIOStats // the counters when the watch began
	last     DeviceIOStats // used, at the last look
	lastAt   time.Time
	wait     time.Duration // the last wait scheduled
	pace     DeviceLimits  // the pace written (burstPace); zero while the device runs at full speed
	end      *BurstEnd
	pending  string // the end reason while writing the limits is retried
	failures int    // failed writes of the limits
	closed   bool
}

// maxApplyFailures is how often writing the limits is tried (one
// burstMaxPoll apart) before the watcher gives up with BurstEndError.
const maxApplyFailures = 3

// WatchBurst starts the start burst of device major:minor in the existing
// cgroup at cgroupPath (the container's cgroup when the OCI runtime's
// processes do the I/O, the sandbox's when a VMM or gVisor's gofer does;
// hierarchy path as for ApplyToCgroup). It reads the device's counters
// there (the budget counts I/O from now on), removes any limit the device
// has in that cgroup (a stale one from an earlier device with the same
// number), and watches the counters until budget is spent or its window
// has passed; then it writes limits, which hold from then on.
//
// With budget off (!budget.Enabled()) it writes limits at once and
// returns a watcher that has already ended (reason BurstEndOff): callers
// need one code path. onEnd, if not nil, is called once, from the timer's
// goroutine, when a burst that was on ends by itself (never from
// WatchBurst or after Close); the caller logs it. On error nothing was
// changed, except that limits are written when the counters can be read
// but the old limit cannot be removed, so that the device is never left
// without them.
//
// The caller must Close the watcher when the container is gone.
func WatchBurst(cgroupPath string, major, minor int64, limits DeviceLimits, budget StartBurst, onEnd func(BurstEnd)) (*BurstWatcher, error) {
	return hostCgroups().watchBurst(cgroupPath, major, minor, limits, budget, onEnd, realBurstClock{})
}

func (c cgroupFS) watchBurst(cgroupPath string, major, minor int64, limits DeviceLimits, budget StartBurst,
	onEnd func(BurstEnd), clk burstClock) (*BurstWatcher, error) {
	w := &BurstWatcher{cg: c, path: cgroupPath, major: major, minor: minor, limits: limits,
		budget: budget, onEnd: onEnd, clk: clk}
	if !budget.Enabled() {
		w.budget = StartBurst{}
		if err := c.apply(cgroupPath, major, minor, limits); err != nil {
			return nil, err
		}
		w.end = &BurstEnd{Reason: BurstEndOff}
		return w, nil
	}
	counters, err := c.openCounters(cgroupPath, major, minor)
	if err != nil {
		return nil, fmt.Errorf("start burst: %w", err)
	}
	base, err := counters.Read()
	if err != nil {
		counters.Close()
		return nil, fmt.Errorf("start burst: %w", err)
	}
	if err := c.apply(cgroupPath, major, minor, DeviceLimits{}); err != nil {
		counters.Close()
		if aerr := c.apply(cgroupPath, major, minor, limits); aerr != nil {
			return nil, fmt.Errorf("start burst: %w (and writing the limits: %w)", err, aerr)
		}
		return nil, fmt.Errorf("start burst: removing the device's limits: %w (the limits were written)", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.counters = counters
	w.began, w.lastAt, w.base = clk.Now(), clk.Now(), base
	w.wait = min(burstMinPoll, budget.Window)
	w.timer = clk.AfterFunc(w.wait, w.look)
	return w, nil
}

// look reads the counters and ends the burst or schedules the next look.
func (w *BurstWatcher) look() {
	w.mu.Lock()
	if w.closed || w.end != nil {
		w.mu.Unlock()
		return
	}
	now := w.clk.Now()
	elapsed := now.Sub(w.began)
	if w.pending != "" { // retrying the limits
		w.finishLocked(now, w.pending)
		return
	}
	s, err := w.counters.Read()
	if err != nil {
		// The cgroup is gone (the container with it) or unreadable: write
		// the limits if it can still take them, and stop.
		w.failLocked(BurstEnd{Reason: BurstEndError, Used: w.last, After: elapsed, Err: err})
		return
	}
	used := s.since(w.base)
	if reason := burstSpent(w.budget, used, elapsed); reason != "" {
		w.last = used
		w.finishLocked(now, reason)
		return
	}
	delta, dt := used.since(w.last), now.Sub(w.lastAt)
	w.last, w.lastAt = used, now
	wait := nextBurstPoll(w.wait, w.budget, used, delta, dt)
	paced := w.pace != DeviceLimits{}
	pw := pacedBurstWait(w.wait, w.budget, used, delta, dt)
	pacing := pw > 0 && (paced || wait == burstMaxPoll)
	switch {
	case pacing:
		wait = pw
	case paced:
		wait = burstMinPoll // busier under the pace: lift it and see the device's own rate
	}
	wait = min(wait, w.budget.Window-elapsed)
	var pace DeviceLimits // none: full speed
	if pacing {
		pace = burstPace(w.budget, used, wait, w.limits)
	}
	if pace != w.pace {
		if err := w.cg.apply(w.path, w.major, w.minor, pace); err != nil {
			// Not paced: watch closely, as without the pace. Not lifted:
			// the device runs at least at its pace; try again soon.
			wait = min(wait, burstMaxPoll)
		} else {
			w.pace = pace
		}
	}
	w.wait = wait
	w.timer.Reset(w.wait)
	w.mu.Unlock()
}

// finishLocked writes the limits and ends the burst with reason; a failed
// write is retried. Called with w.mu held; it releases it.
func (w *BurstWatcher) finishLocked(now time.Time, reason string) {
	w.pending = reason
	if err := w.cg.apply(w.path, w.major, w.minor, w.limits); err != nil {
		w.failures++
		if w.failures < maxApplyFailures {
			w.timer.Reset(burstMaxPoll)
			w.mu.Unlock()
			return
		}
		w.setEndLocked(BurstEnd{Reason: BurstEndError, Used: w.last, After: now.Sub(w.began),
			Err: fmt.Errorf("writing the limits after the start burst (%s): %w", reason, err)})
		return
	}
	w.setEndLocked(BurstEnd{Reason: reason, Used: w.last, After: now.Sub(w.began)})
}

// failLocked ends the burst on an error: the limits are still tried once.
// Called with w.mu held; it releases it.
func (w *BurstWatcher) failLocked(e BurstEnd) {
	if err := w.cg.apply(w.path, w.major, w.minor, w.limits); err != nil {
		e.Err = fmt.Errorf("%w (and writing the limits: %w)", e.Err, err)
	}
	w.setEndLocked(e)
}

// setEndLocked records e and calls onEnd after releasing w.mu.
func (w *BurstWatcher) setEndLocked(e BurstEnd) {
	w.end = &e
	w.counters.Close()
	onEnd := w.onEnd
	w.mu.Unlock()
	if onEnd != nil {
		onEnd(e)
	}
}

// Status returns a snapshot of the burst.
func (w *BurstWatcher) Status() BurstStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := BurstStatus{Budget: w.budget, Used: w.last}
	if p := w.pace; p != (DeviceLimits{}) && w.end == nil {
		st.Pace = &p
	}
	if w.end != nil {
		e := *w.end
		st.End, st.Used = &e, e.Used
	} else {
		st.Active = !w.closed
	}
	return st
}

// Close stops the watch. A burst still on is left as it is: the device
// stays unthrottled (or paced) in the cgroup, which goes with the container
// (the next WatchBurst on a device with the same number removes what is
// left). Close is idempotent and safe on a nil watcher.
func (w *BurstWatcher) Close() error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	if w.timer != nil {
		w.timer.Stop()
	}
	return w.counters.Close()
}

// burstClock is the watcher's time source; tests fire timers by hand.
type burstClock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) burstTimer
}

// burstTimer is the part of *time.Timer the watcher uses.
type burstTimer interface {
	Stop() bool
	Reset(d time.Duration) bool
}

type realBurstClock struct{}

func (realBurstClock) Now() time.Time { return time.Now() }

func (realBurstClock) AfterFunc(d time.Duration, f func()) burstTimer { return time.AfterFunc(d, f) }
