package logfwd

import (
	"sync"
	"time"
)

// saveCheckpoint records the committed state. In Run's cycles (cpAsync)
// the state is captured here and written by the checkpoint writer, so that
// the fsyncs do not hold the lock: the next line is read and delivered
// while the previous checkpoint is being made durable. Elsewhere (Drain,
// Close, New) it waits for the writer and writes synchronously.
// Preconditions: lock held.
func (c *Collector) saveCheckpoint() error {
	job := cpJob{path: c.cfg.CheckpointPath, syncDir: !c.cpExists,
		cp: checkpoint{Version: checkpointVersion, Sinks: map[string]int64{}}}
	for name, s := range c.sinks {
		if p, ok := s.(positioned); ok {
			job.cp.Sinks[name] = p.Position()
			job.sinks = append(job.sinks, p)
		}
	}
	for _, f := range c.files {
		if f.started {
			job.cp.Files = append(job.cp.Files, cpFile{Dev: f.key.dev, Ino: f.key.ino, FP: f.fp, FPLen: f.fpLen,
				lineState: f.committed, Path: f.path})
		}
	}
	for _, e := range c.restored {
		job.cp.Files = append(job.cp.Files, e.cpFile)
	}
	for _, r := range c.rotations {
		if r.settled {
			job.cp.Rotations = append(job.cp.Rotations, cpRotation{Dir: r.dir, FP: r.fp, FPLen: r.fpLen, Off: r.off, At: r.at.UnixNano()})
		}
	}
	c.dirtyCP, c.cpAt = false, time.Now()
	if c.cpAsync && !job.syncDir {
		return c.cpw.submit(job)
	}
	if err := c.cpw.wait(); err != nil {
		return err
	}
	if err := job.write(); err != nil {
		c.dirtyCP = true
		return err
	}
	c.cpExists = true
	return nil
}

// cpJob is one checkpoint to write: the positioned sinks are synced first,
// so that no checkpoint is durable before the sink data it accounts for.
type cpJob struct {
	path    string
	cp      checkpoint
	syncDir bool
	sinks   []positioned
}

func (j *cpJob) write() error {
	for _, s := range j.sinks {
		if err := s.Sync(); err != nil {
			return err
		}
	}
	return saveCheckpoint(j.path, j.cp, j.syncDir)
}

// cpWriter writes checkpoints in the background, one at a time; a job
// submitted while one is written replaces any job still waiting (the newer
// state includes the older one). An error is returned by the next submit
// or wait.
type cpWriter struct {
	mu      sync.Mutex
	idle    *sync.Cond
	busy    bool
	pending *cpJob
	err     error
}

func (w *cpWriter) submit(j cpJob) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.err; err != nil {
		w.err = nil
		return err
	}
	w.pending = &j
	if !w.busy {
		w.busy = true
		go w.loop()
	}
	return nil
}

func (w *cpWriter) loop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.pending != nil {
		j := w.pending
		w.pending = nil
		w.mu.Unlock()
		err := j.write()
		w.mu.Lock()
		if err != nil && w.err == nil {
			w.err = err
		}
	}
	w.busy = false
	if w.idle != nil {
		w.idle.Broadcast()
	}
}

// wait returns once no checkpoint is being written, with the error of the
// last one that failed since the previous submit or wait.
func (w *cpWriter) wait() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.idle == nil {
		w.idle = sync.NewCond(&w.mu)
	}
	for w.busy {
		w.idle.Wait()
	}
	err := w.err
	w.err = nil
	return err
}
