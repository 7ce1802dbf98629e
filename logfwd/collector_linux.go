package logfwd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"
)

// Collector follows one pod's log files and forwards their lines.
type Collector struct {
	cfg   Config
	log   *slog.Logger
	stats statsBox
	conf  confiner

	// lock is a one-slot semaphore (so Drain can give up on its context)
	// guarding every field below.
	lock      chan struct{}
	rootfd    int
	watches   []*watchState
	files     map[fileKey]*tailFile
	rotations []rotation
	skipped   map[string]bool
	sinks     map[string]Sink
	restored  map[fileKey]*restoredFile // checkpoint entries not yet matched
	batches   map[string]*batch
	touched   map[*tailFile]bool // files whose cur differs from committed
	dirtyCP   bool
	buf       []byte
	watcher   *fsnotify.Watcher
	closed    bool

	wake     chan struct{}
	stopped  chan struct{}
	stopOnce sync.Once
}

type fileKey struct{ dev, ino uint64 }

type watchState struct {
	Watch
	rel, abs   string
	dest       string
	longLines  LongLineMode
	files      map[string]*tailFile // by current name
	watchedIno uint64               // directory inode under inotify; 0 if none
}

type batch struct {
	recs  []Record
	bytes int
}

// rotation remembers the content a truncated file had, so that a copy of
// it (copytruncate) continues where reading stopped.
type rotation struct {
	dir   string
	fp    uint64
	fpLen int
	off   int64
	at    time.Time
}

// New creates a collector: it validates cfg, opens Root and the sinks and
// restores the checkpoint. Nothing is read until Run or Drain.
func New(cfg Config, logger *slog.Logger) (*Collector, error) {
	return newCollector(cfg, logger, nil)
}

// newCollector is New with sinks injected by tests (nil: from cfg).
func newCollector(cfg Config, logger *slog.Logger, sinks map[string]Sink) (*Collector, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("logfwd config: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Collector{
		cfg: cfg, log: logger, conf: confiner{noOpenat2: cfg.noOpenat2},
		lock: make(chan struct{}, 1), files: map[fileKey]*tailFile{}, skipped: map[string]bool{},
		batches: map[string]*batch{}, touched: map[*tailFile]bool{},
		buf:  make([]byte, max(2*cfg.MaxLineBytes+2, 256<<10)),
		wake: make(chan struct{}, 1), stopped: make(chan struct{}),
	}
	fd, err := unix.Open(cfg.Root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open log root %s: %w", cfg.Root, err)
	}
	c.rootfd = fd
	c.watches = c.makeWatches(cfg.Watches)
	if err := c.openSinks(sinks); err != nil {
		c.closeAll()
		return nil, err
	}
	if err := c.restore(); err != nil {
		c.closeAll()
		return nil, err
	}
	return c, nil
}

func (c *Collector) makeWatches(ws []Watch) []*watchState {
	out := make([]*watchState, 0, len(ws))
	for _, w := range ws {
		ll := w.LongLines
		if ll == "" {
			ll = c.cfg.LongLines
		}
		out = append(out, &watchState{
			Watch: w, rel: relHostDir(w.Container, w.Dir), abs: HostDir(c.cfg.Root, w.Container, w.Dir),
			dest: dest(w), longLines: ll, files: map[string]*tailFile{},
		})
	}
	return out
}

func (c *Collector) openSinks(injected map[string]Sink) error {
	c.sinks = map[string]Sink{}
	for k, s := range injected {
		c.sinks[k] = s
	}
	if _, ok := c.sinks[DestinationFile]; !ok && c.cfg.FileSink != nil {
		s, err := newFileSink(*c.cfg.FileSink, c.cfg.Pod)
		if err != nil {
			return err
		}
		c.sinks[DestinationFile] = s
	}
	if _, ok := c.sinks[DestinationForward]; !ok && c.cfg.Forward != nil {
		s, err := newForwardSink(*c.cfg.Forward, c.cfg.Pod, c.log, &c.stats)
		if err != nil {
			return err
		}
		c.sinks[DestinationForward] = s
	}
	return nil
}

// restore loads the checkpoint, rolls positioned sinks back to it, and
// writes a first checkpoint when there was none (so that a crash before the
// first delivery cannot leave sink data no checkpoint accounts for).
func (c *Collector) restore() error {
	cp, ok, err := loadCheckpoint(c.cfg.CheckpointPath)
	if err != nil {
		return err
	}
	c.restored = map[fileKey]*restoredFile{}
	for _, f := range cp.Files {
		c.restored[fileKey{f.Dev, f.Ino}] = &restoredFile{cpFile: f}
	}
	for name, s := range c.sinks {
		if p, isPos := s.(positioned); isPos && ok {
			if pos, has := cp.Sinks[name]; has {
				if err := p.Restore(pos); err != nil {
					return fmt.Errorf("restore %s sink: %w", name, err)
				}
			}
		}
	}
	if !ok {
		return c.saveCheckpoint()
	}
	return nil
}

func (c *Collector) saveCheckpoint() error {
	cp := checkpoint{Version: checkpointVersion, Sinks: map[string]int64{}}
	for name, s := range c.sinks {
		if p, ok := s.(positioned); ok {
			cp.Sinks[name] = p.Position()
		}
	}
	for _, f := range c.files {
		if f.started {
			cp.Files = append(cp.Files, cpFile{Dev: f.key.dev, Ino: f.key.ino, FP: f.fp, FPLen: f.fpLen,
				lineState: f.committed, Path: f.path})
		}
	}
	for _, e := range c.restored {
		cp.Files = append(cp.Files, e.cpFile)
	}
	if err := saveCheckpoint(c.cfg.CheckpointPath, cp); err != nil {
		return err
	}
	c.dirtyCP = false
	return nil
}

func (c *Collector) acquire(ctx context.Context) bool {
	select {
	case c.lock <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (c *Collector) release() { <-c.lock }

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
// collector; it returns nil then. Errors are returned only when the
// collector cannot work at all (checkpoint cannot be written).
func (c *Collector) Run(ctx context.Context) error {
	var events <-chan fsnotify.Event
	var errs <-chan error
	if !c.acquire(ctx) {
		return nil
	}
	if c.closed {
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
			if !c.acquire(ctx) {
				return nil
			}
			if c.closed {
				c.release()
				return nil
			}
			err := c.cycle(ctx, wk)
			c.release()
			if err != nil && ctx.Err() == nil {
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
// delivers, checkpoints, releases all files and stops the collector (Run
// returns). Used when the pod is deleted. The collector is closed after.
func (c *Collector) Drain(ctx context.Context) error {
	if !c.acquire(ctx) {
		return fmt.Errorf("drain: %w", ctx.Err())
	}
	defer c.release()
	if c.closed {
		return errors.New("drain: collector is closed")
	}
	if err := c.cycle(ctx, work{full: true, drain: true}); err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	c.closeAll()
	return nil
}

// Close stops the collector without draining; offsets stay at the last
// checkpoint.
func (c *Collector) Close() error {
	c.lock <- struct{}{}
	defer c.release()
	if !c.closed {
		c.closeAll()
	}
	return nil
}

// UpdateWatches replaces the watches of a running pod (a policy change,
// R19 beyond). Files no longer matched are read to their end, then let go.
func (c *Collector) UpdateWatches(ctx context.Context, ws []Watch) error {
	for i, w := range ws {
		if err := c.cfg.checkWatch(w); err != nil {
			return fmt.Errorf("watch[%d]: %w", i, err)
		}
	}
	if !c.acquire(ctx) {
		return fmt.Errorf("update watches: %w", ctx.Err())
	}
	defer c.release()
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

func (c *Collector) watchesDir(abs string) bool {
	for _, w := range c.watches {
		if w.abs == abs {
			return true
		}
	}
	return false
}

// closeAll releases every descriptor and sink. Preconditions: lock held.
func (c *Collector) closeAll() {
	c.closed = true
	for _, f := range c.files {
		unix.Close(f.fd)
	}
	c.files = map[fileKey]*tailFile{}
	for name, s := range c.sinks {
		if err := s.Close(); err != nil {
			c.log.Warn("closing sink", "sink", name, "error", err)
		}
	}
	if c.watcher != nil {
		c.watcher.Close()
		c.watcher = nil
	}
	if c.rootfd > 0 {
		unix.Close(c.rootfd)
		c.rootfd = -1
	}
	c.stopOnce.Do(func() { close(c.stopped) })
	c.stats.add(func(s *Stats) { s.Files = 0 })
}

// watchForEvent maps an inotify event to the watches of its directory.
func (c *Collector) watchesFor(name string) (dir []*watchState, base string) {
	d, b := filepath.Dir(name), filepath.Base(name)
	for _, w := range c.watches {
		if w.abs == d {
			dir = append(dir, w)
		} else if w.abs == name {
			dir = append(dir, w)
			b = ""
		}
	}
	return dir, b
}

func containerPath(w *watchState, name string) string { return path.Join(w.Dir, name) }
