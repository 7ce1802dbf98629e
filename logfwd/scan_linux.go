package logfwd

import (
	"context"
	"errors"
	"os"
	"path"
	"sort"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"
)

const (
	maxRotations   = 256
	rotationMaxAge = 5 * time.Minute
	maxSkipMemory  = 8192
)

// cycle does one round: scan what changed, read, deliver, checkpoint,
// release files that are gone and quiet. Preconditions: lock held.
func (c *Collector) cycle(ctx context.Context, wk work) error {
	now := time.Now()
	toRead := map[*tailFile]bool{}
	scanned := map[*watchState]bool{}
	scan := func(w *watchState) {
		if !scanned[w] {
			scanned[w] = true
			c.scan(w, now, toRead)
		}
	}
	if wk.full || wk.drain {
		for _, w := range c.watches {
			scan(w)
		}
		for _, f := range c.files {
			toRead[f] = true
		}
		c.forgetRestored()
	}
	for _, ev := range wk.events {
		ws, name := c.watchesFor(ev.Name)
		for _, w := range ws {
			if f := w.files[name]; f != nil && name != "" && ev.Op == fsnotify.Write {
				toRead[f] = true
				continue
			}
			scan(w)
		}
	}
	var releasable []*tailFile
	for _, f := range c.files {
		switch {
		case f.gone:
			toRead[f] = true
			if wk.drain || f.quietFor(now) >= c.cfg.ReleaseAfter {
				releasable = append(releasable, f)
			}
		case !f.started:
			toRead[f] = true
		case wk.flush && f.pendingOff >= 0:
			toRead[f] = true
		}
	}
	// Started files first: a truncation seen there is what a new copy is
	// matched against.
	order := make([]*tailFile, 0, len(toRead))
	for f := range toRead {
		order = append(order, f)
	}
	sort.Slice(order, func(i, j int) bool {
		if order[i].started != order[j].started {
			return order[i].started
		}
		return order[i].path < order[j].path
	})
	for _, f := range order {
		drain := wk.drain || f.gone && containsFile(releasable, f)
		for {
			if err := ctx.Err(); err != nil {
				c.rollback() // preempted or stopped: read again later
				return err
			}
			full := c.readFile(f, now, drain)
			if !full {
				break
			}
			if err := c.deliver(ctx); err != nil {
				return err
			}
		}
	}
	if err := c.deliver(ctx); err != nil {
		return err
	}
	// Files still present stay in the checkpoint after a drain, so that a
	// later collector on the same volume repeats nothing.
	for _, f := range releasable {
		if f.started && f.cur.Off >= f.seenSize && f.pendingOff < 0 || wk.drain {
			c.releaseFile(f)
		}
	}
	lag, _ := c.lag()
	c.stats.add(func(s *Stats) { s.LagBytes = lag; s.Files = len(c.files) })
	if c.dirtyCP {
		if err := c.saveCheckpoint(); err != nil {
			return err
		}
	}
	return nil
}

func containsFile(fs []*tailFile, f *tailFile) bool {
	for _, g := range fs {
		if g == f {
			return true
		}
	}
	return false
}

// scan lists w's directory (opened confined beneath Root), starts new
// matching files and marks files no longer there as gone.
func (c *Collector) scan(w *watchState, now time.Time, toRead map[*tailFile]bool) {
	dfd, err := c.conf.openBeneath(c.rootfd, w.rel, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
	if err != nil {
		if !errors.Is(err, unix.ENOENT) {
			reason := reasonFor(err)
			var st unix.Stat_t
			if unix.Fstatat(c.rootfd, w.rel, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
				reason = SkipSymlink // O_DIRECTORY|O_NOFOLLOW reports ENOTDIR
			}
			c.skipOnce(w.abs, "", reason)
			c.log.Warn("log directory not readable", "dir", w.Dir, "container", w.Container, "error", err)
		}
		c.markGone(w, nil, toRead)
		return
	}
	d := os.NewFile(uintptr(dfd), w.abs)
	defer d.Close()
	c.ensureInotify(w, dfd)
	names, err := d.Readdirnames(-1)
	if err != nil {
		c.log.Warn("listing log directory", "dir", w.Dir, "error", err)
		return
	}
	seen := map[*tailFile]bool{}
	for _, name := range names {
		if ok, _ := path.Match(w.Pattern, name); !ok {
			continue
		}
		if len(name) > MaxFileNameLen {
			c.skipOnce(w.abs, name, SkipNameTooLong)
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			continue // gone since listing
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
		case unix.S_IFLNK:
			c.skipOnce(w.abs, name, SkipSymlink)
			continue
		default:
			c.skipOnce(w.abs, name, SkipNotRegular)
			continue
		}
		key := fileKey{uint64(st.Dev), st.Ino}
		if f := c.files[key]; f != nil {
			if f.w != w && !f.gone {
				continue // another watch on the same directory follows it
			}
			c.rename(f, w, name)
			seen[f] = true
			if st.Size != f.seenSize || f.gone {
				toRead[f] = true
			}
			f.gone = false
			continue
		}
		if len(c.files) >= c.cfg.MaxFiles {
			c.skipOnce(w.abs, name, SkipLimit)
			continue
		}
		of, reason, err := c.conf.openRegular(dfd, name)
		if err != nil {
			c.skipOnce(w.abs, name, reason)
			continue
		}
		key = fileKey{of.dev, of.ino}
		if f := c.files[key]; f != nil { // replaced between stat and open
			unix.Close(of.fd)
			continue
		}
		f := &tailFile{key: key, fd: of.fd, w: w, pendingOff: -1}
		c.files[key] = f
		c.rename(f, w, name)
		seen[f] = true
		toRead[f] = true
		c.startFromCheckpoint(f)
		c.stats.add(func(s *Stats) { s.FilesTotal++ })
	}
	c.markGone(w, seen, toRead)
}

// restoredFile is a checkpoint entry no scan has matched yet.
type restoredFile struct {
	cpFile
	missed int // full scans since the restart that did not see it
}

// restoredKeepScans is how many full scans a checkpoint entry survives
// unmatched. One is not enough: a file renamed while a scan lists its
// directory (rotation) is missing from that listing, and forgetting its
// offset would read it again from its start.
const restoredKeepScans = 3

// forgetRestored ages the checkpoint entries that the full scan just done
// did not match, and drops those gone for restoredKeepScans scans (deleted
// or renamed away while the collector was down).
func (c *Collector) forgetRestored() {
	for k, e := range c.restored {
		if e.missed++; e.missed >= restoredKeepScans {
			delete(c.restored, k)
			c.dirtyCP = true
		}
	}
}

func (c *Collector) rename(f *tailFile, w *watchState, name string) {
	if f.name != "" && f.w.files[f.name] == f {
		delete(f.w.files, f.name)
	}
	if prev := w.files[name]; prev != nil && prev != f && prev.name == name {
		prev.name = "" // its name now belongs to f; markGone lets it go
	}
	f.w, f.name, f.path = w, name, containerPath(w, name)
	w.files[name] = f
}

// markGone marks w's files that the scan did not see (deleted, renamed to
// a name that does not match, or whose name a new file took over).
func (c *Collector) markGone(w *watchState, seen map[*tailFile]bool, toRead map[*tailFile]bool) {
	for name, f := range w.files {
		if !seen[f] {
			delete(w.files, name)
		}
	}
	for _, f := range c.files {
		if f.w == w && !seen[f] && !f.gone {
			f.gone, f.name = true, ""
			toRead[f] = true
		}
	}
}

// ensureInotify adds (or renews, after the directory was replaced) the
// inotify watch of w. The directory was just opened confined, so the path
// is a real directory; events only ever trigger confined scans.
func (c *Collector) ensureInotify(w *watchState, dfd int) {
	if c.watcher == nil {
		return
	}
	var st unix.Stat_t
	if unix.Fstat(dfd, &st) != nil || st.Ino == w.watchedIno {
		return
	}
	if w.watchedIno != 0 {
		c.watcher.Remove(w.abs)
	}
	if err := c.watcher.Add(w.abs); err != nil {
		c.log.Warn("inotify watch failed; polling", "dir", w.abs, "error", err)
		return
	}
	w.watchedIno = st.Ino
}

func (c *Collector) skipOnce(dir, name, reason string) {
	k := dir + "/" + name + "\x00" + reason
	if c.skipped[k] {
		return
	}
	if len(c.skipped) < maxSkipMemory {
		c.skipped[k] = true
	}
	c.stats.skip(reason)
	c.log.Debug("log file skipped", "dir", dir, "name", name, "reason", reason)
}

// startFromCheckpoint resumes f from a checkpoint entry with the same
// device/inode and the same first bytes. A different fingerprint means the
// inode was reused (or the file rewritten while we were down): a new file.
func (c *Collector) startFromCheckpoint(f *tailFile) {
	e, ok := c.restored[f.key]
	if !ok {
		return
	}
	delete(c.restored, f.key)
	c.dirtyCP = true
	if h, ok := hashPrefix(f.fd, e.FPLen); ok && h == e.FP {
		f.fp, f.fpLen, f.committed, f.cur, f.started = e.FP, e.FPLen, e.lineState, e.lineState, true
		return
	}
	// Truncated while we were down (copytruncate): a copy of the old
	// content, found in this scan or later, continues where the checkpoint
	// says reading stopped, which is where the sink was cut back to.
	c.addRotation(rotation{dir: f.w.abs, fp: e.FP, fpLen: e.FPLen, off: e.Off, at: time.Now(), settled: true})
	c.stats.add(func(s *Stats) { s.Truncations++ })
}

// resolveStart decides where a new file starts. A file whose first bytes
// equal those of a file truncated in the same directory (copytruncate)
// continues where that file's reading stopped; one equal to a live file is
// deferred until that file is truncated or let go, or CopyWait passes.
func (c *Collector) resolveStart(f *tailFile, size int64, now time.Time, drain bool) bool {
	if size == 0 && !drain {
		return false // a copy in progress looks like this too
	}
	hashes := map[int]uint64{}
	match := func(fp uint64, n int) bool {
		if n <= 0 || int64(n) > size {
			return false
		}
		h, ok := hashes[n]
		if !ok {
			h, _ = hashPrefix(f.fd, n)
			hashes[n] = h
		}
		return h == fp
	}
	start := func(off int64) bool {
		off = min(off, size)
		f.started, f.deferredOf = true, nil
		f.cur, f.committed = lineState{Off: off}, lineState{Off: off}
		if off > 0 {
			f.fpLen = int(min(size, fpWindow))
			f.fp, _ = hashPrefix(f.fd, f.fpLen)
		}
		c.dirtyCP = true
		return true
	}
	for i := len(c.rotations) - 1; i >= 0; i-- {
		r := c.rotations[i]
		if r.dir == f.w.abs && match(r.fp, r.fpLen) {
			c.rotations = append(c.rotations[:i], c.rotations[i+1:]...)
			return start(r.off)
		}
	}
	if t := f.deferredOf; t != nil {
		switch {
		case t.released:
			return start(t.finalOff)
		case drain:
			return start(t.cur.Off)
		case now.Sub(f.deferredAt) >= c.cfg.CopyWait:
			return start(0)
		}
		return false
	}
	for _, t := range c.files {
		if t != f && t.started && t.w.abs == f.w.abs && t.cur.Off > 0 && match(t.fp, t.fpLen) {
			if drain {
				return start(t.cur.Off)
			}
			f.deferredOf, f.deferredAt = t, now
			return false
		}
	}
	return start(0)
}

func (c *Collector) addRotation(r rotation) {
	if r.off == 0 || r.fpLen == 0 {
		return
	}
	rs := c.rotations[:0]
	for _, o := range c.rotations {
		if r.at.Sub(o.at) < rotationMaxAge {
			rs = append(rs, o)
		}
	}
	if len(rs) >= maxRotations {
		rs = rs[1:]
	}
	c.rotations = append(rs, r)
	c.dirtyCP = true
}

func (c *Collector) releaseFile(f *tailFile) {
	if f.released {
		return
	}
	unix.Close(f.fd)
	f.released, f.finalOff = true, f.cur.Off
	delete(c.files, f.key)
	if f.name != "" && f.w.files[f.name] == f {
		delete(f.w.files, f.name)
	}
	delete(c.touched, f)
	c.dirtyCP = true
}
