package logfwd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fsnotify/fsnotify"
)

// ErrNotDrained is wrapped by Drain's error when it stopped before every
// line was delivered (deadline passed, destination down or slow). What was
// not delivered stays in the log volume; the checkpoint accounts for exactly
// what was, so a collector started later on the same Root, CheckpointPath
// and sink delivers the rest with nothing lost and nothing repeated (R18).
// The caller must keep the volume and the checkpoint for that start.
var ErrNotDrained = errors.New("log volume not fully delivered")

// The lock is a one-slot semaphore so that a waiter can give up on its
// context. Run holds it for one cycle at a time; a cycle can wait a long
// time in a delivery retry (destination down), so every other taker first
// preempts Run's cycle: the cycle rolls back what it read but did not
// deliver (read again later, nothing lost) and lets go at once.

func (c *Collector) acquire(ctx context.Context) bool {
	select {
	case c.lock <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (c *Collector) release() { <-c.lock }

// preemptGrace is how long a caller other than Run waits for Run's cycle
// to end by itself before preempting it: a preempted Forward delivery that
// the endpoint received but had not acknowledged yet is sent again.
const preemptGrace = 500 * time.Millisecond

// acquireFor takes the lock for a caller other than Run, preempting Run's
// current cycle after preemptGrace, or gives up when ctx is done.
func (c *Collector) acquireFor(ctx context.Context) bool {
	c.waiting.Add(1) // Run starts no new cycle meanwhile
	defer c.waiting.Add(-1)
	grace := time.NewTimer(preemptGrace)
	select {
	case c.lock <- struct{}{}:
		grace.Stop()
		return true
	case <-ctx.Done():
		grace.Stop()
		return false
	case <-grace.C:
	}
	for {
		select {
		case c.lock <- struct{}{}:
			return true
		default:
		}
		c.preemptRun()
		t := time.NewTimer(10 * time.Millisecond) // Run may be between taking the lock and arming preempt
		select {
		case c.lock <- struct{}{}:
			t.Stop()
			return true
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

func (c *Collector) preemptRun() {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	if c.preempt != nil {
		c.preempt()
	}
}

// runCycle is one of Run's cycles, cancellable by preemptRun.
func (c *Collector) runCycle(ctx context.Context, wk work) (preempted bool, err error) {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.pmu.Lock()
	c.preempt = cancel
	c.pmu.Unlock()
	c.cpAsync = true
	err = c.cycle(cctx, wk)
	c.cpAsync = false
	c.pmu.Lock()
	c.preempt = nil
	c.pmu.Unlock()
	return err != nil && ctx.Err() == nil && cctx.Err() != nil, err
}

// Stats returns a snapshot of the counters.
func (c *Collector) Stats() Stats { return c.stats.snapshot() }

// work is what one cycle does.
type work struct {
	full   bool // scan every directory and look at every file (poll)
	flush  bool // look at files waiting on a last line without newline
	drain  bool // read everything to the end, flush partial lines
	events []fsnotify.Event
}

// Run follows the files until ctx is done or Drain/Close stops the
// collector; it returns nil then, promptly even while a delivery is being
// retried. Errors are returned only when the collector cannot work at all
// (checkpoint cannot be written).
func (c *Collector) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(c.stop, cancel)()
	var events <-chan fsnotify.Event
	var errs <-chan error
	if !c.acquire(ctx) {
		return nil
	}
	if c.closed || ctx.Err() != nil {
		c.release()
		return nil
	}
	if !c.cfg.DisableInotify && c.watcher == nil {
		w, err := fsnotify.NewBufferedWatcher(4096)
		if err != nil {
			c.log.Warn("inotify unavailable; polling only", "error", err)
		} else {
			c.watcher = w
		}
	}
	if c.watcher != nil {
		events, errs = c.watcher.Events, c.watcher.Errors
	}
	c.release()

	poll := time.NewTicker(c.cfg.PollInterval)
	defer poll.Stop()
	// Housekeeping: partial-line flushes, release of gone files, deferred
	// copies. A cycle with nothing of that kind to do reads nothing.
	flush := time.NewTicker(max(min(c.cfg.FlushTimeout/2, c.cfg.ReleaseAfter, c.cfg.CopyWait/2), 10*time.Millisecond))
	defer flush.Stop()
	wk := work{full: true}
	for {
		if wk.full || wk.flush || len(wk.events) > 0 {
			for c.waiting.Load() > 0 && ctx.Err() == nil {
				time.Sleep(time.Millisecond) // let Drain, Close or UpdateWatches go first
			}
			if !c.acquire(ctx) {
				return nil
			}
			if c.closed {
				c.release()
				return nil
			}
			preempted, err := c.runCycle(ctx, wk)
			c.release()
			switch {
			case ctx.Err() != nil:
				return nil
			case preempted:
				wk = work{full: true} // read again what was rolled back
				continue
			case err != nil:
				return err
			}
			wk = work{}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.stopped:
			return nil
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			wk.events = append(wk.events, ev)
			// Coalesce whatever else is queued.
			for more := true; more && len(wk.events) < 4096; {
				select {
				case ev, ok := <-events:
					if ok {
						wk.events = append(wk.events, ev)
					} else {
						more = false
					}
				default:
					more = false
				}
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			if !errors.Is(err, fsnotify.ErrEventOverflow) {
				c.log.Warn("inotify error", "error", err)
			}
			wk.full = true
		case <-poll.C:
			wk.full = true
		case <-flush.C:
			wk.flush = true
		case <-c.wake:
			wk.full = true
		}
	}
}

// Drain reads every file to its end (flushing last lines without newline),
// delivers, checkpoints and closes the collector; Run returns. Used when the
// pod is deleted.
//
// Drain is bounded by ctx: it preempts Run's cycle if that does not end
// within preemptGrace (it may be retrying a delivery to a destination that
// is down), stops Run, and when ctx is done before
// everything is delivered it rolls back what was read but not accepted,
// checkpoints what was, closes the collector and returns an error wrapping
// ErrNotDrained and ctx's error. It never waits beyond ctx except for a
// file sink's write or fsync in progress. The collector is closed after
// Drain in every case.
func (c *Collector) Drain(ctx context.Context) error {
	if !c.acquireFor(ctx) {
		c.stopAll()
		go c.Close() // once Run lets go
		return fmt.Errorf("drain: the collector did not stop in time: %w: %w", ErrNotDrained, ctx.Err())
	}
	defer c.release()
	if c.closed {
		return errors.New("drain: collector is closed")
	}
	err := c.cycle(ctx, work{full: true, drain: true})
	if err != nil {
		lag, files := c.lag()
		if cerr := c.saveCheckpoint(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		c.closeAll()
		return fmt.Errorf("drain: %d bytes in %d files not delivered, left for the next start: %w: %w",
			lag, files, ErrNotDrained, err)
	}
	c.closeAll()
	return nil
}

// Close stops the collector without draining, checkpointing what was
// delivered. It waits for a delivery in progress at most preemptGrace: a
// delivery being retried is abandoned and read again by the next start.
func (c *Collector) Close() error {
	c.acquireFor(context.Background())
	defer c.release()
	if c.closed {
		return nil
	}
	var err error
	if c.dirtyCP {
		err = c.saveCheckpoint() // what was delivered since the last one
	}
	c.closeAll()
	return err
}

// UpdateWatches replaces the watches of a running pod (a policy change,
// R19 beyond). Files no longer matched are read to their end, then let go.
// It waits for the lock at most until ctx is done, preempting a delivery
// still in progress after preemptGrace.
func (c *Collector) UpdateWatches(ctx context.Context, ws []Watch) error {
	for i, w := range ws {
		if err := c.cfg.checkWatch(w); err != nil {
			return fmt.Errorf("watch[%d]: %w", i, err)
		}
	}
	if !c.acquireFor(ctx) {
		return fmt.Errorf("update watches: %w", ctx.Err())
	}
	defer c.release()
	if c.closed {
		return errors.New("update watches: collector is closed")
	}
	old := c.watches
	c.watches = c.makeWatches(ws)
	c.cfg.Watches = ws
	for _, w := range old {
		for _, f := range w.files {
			if f.w == w {
				f.gone, f.name = true, ""
			}
		}
		if w.watchedIno != 0 && c.watcher != nil && !c.watchesDir(w.abs) {
			c.watcher.Remove(w.abs)
		}
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return nil
}

// lag is what was seen in the files but not accepted by a sink yet.
// Preconditions: lock held.
func (c *Collector) lag() (bytes int64, files int) {
	for _, f := range c.files {
		if f.seenSize > f.committed.Off {
			bytes += f.seenSize - f.committed.Off
			files++
		}
	}
	return bytes, files
}
