package logfwd

import (
	"context"
	"fmt"
	"log/slog"
	"path"
	"path/filepath"
	"sync"
	"sync/atomic"
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

	// lock is a one-slot semaphore (see acquireFor) guarding every field
	// below it.
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
	cpExists  bool      // the checkpoint file exists durably
	cpAt      time.Time // last checkpoint
	cpAsync   bool      // in Run's cycle: checkpoints are written by cpw
	cpw       cpWriter
	buf       []byte
	watcher   *fsnotify.Watcher
	closed    bool

	wake     chan struct{}
	stopped  chan struct{} // closed by closeAll
	stopOnce sync.Once

	// stop is cancelled by Drain and Close: Run gives up at once.
	stop    context.Context
	stopAll context.CancelFunc
	// preempt cancels Run's current cycle (nil between cycles); waiting
	// counts callers other than Run waiting for the lock.
	pmu     sync.Mutex
	preempt context.CancelFunc
	waiting atomic.Int32
}

type fileKey struct{ dev, ino uint64 }

type watchState struct {
	Watch
	rel, abs   string
	dest       string
	longLines  LongLineMode
	files      map[string]*tailFile // by current name
	watchedIno uint64               // directory inode under inotify; 0 if none
	batch      *batch               // of dest; set by batchOf
}

// rotation remembers the content a truncated file had, so that a copy of
// it (copytruncate) continues where reading stopped. It is checkpointed
// once settled: once what was read before the truncation has been
// delivered, so that its offset agrees with the sink positions of the same
// checkpoint.
type rotation struct {
	dir     string
	fp      uint64
	fpLen   int
	off     int64
	at      time.Time
	settled bool
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
	c.stop, c.stopAll = context.WithCancel(context.Background())
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
	c.cpExists = ok
	c.restored = map[fileKey]*restoredFile{}
	for _, f := range cp.Files {
		c.restored[fileKey{f.Dev, f.Ino}] = &restoredFile{cpFile: f}
	}
	for _, r := range cp.Rotations {
		c.rotations = append(c.rotations, rotation{dir: r.Dir, fp: r.FP, fpLen: r.FPLen, off: r.Off, at: time.Unix(0, r.At), settled: true})
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
	if err := c.cpw.wait(); err != nil {
		c.log.Warn("writing checkpoint", "error", err)
	}
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
	c.stopAll()
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
