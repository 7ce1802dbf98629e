package logfwd

import (
	"bytes"
	"errors"
	"hash/crc64"
	"time"

	"golang.org/x/sys/unix"
)

// fpWindow is how many first bytes make a file's fingerprint. Shorter files
// have a shorter fingerprint (their whole content) that grows with them, so
// empty and tiny files are collected too.
const fpWindow = 256

var crcTable = crc64.MakeTable(crc64.ECMA)

// tailFile is one followed file (one inode). Fields are guarded by the
// collector lock.
type tailFile struct {
	key  fileKey
	fd   int
	w    *watchState
	name string // current name in w's directory; "" once gone
	path string // container path, for records

	fp    uint64 // crc64 of the first fpLen bytes
	fpLen int

	started    bool      // start offset decided
	deferredOf *tailFile // a live file this one may be a copy of
	deferredAt time.Time

	committed lineState // accepted by the sink (checkpointed)
	cur       lineState // read so far

	seenSize     int64
	pendingOff   int64 // offset of a last line without newline; -1 if none
	pendingSince time.Time

	head jsonHeadCache // the JSON record head for this file's path

	gone       bool // no longer in a watched directory
	quietSize  int64
	quietSince time.Time
	released   bool
	finalOff   int64
}

func (f *tailFile) quietFor(now time.Time) time.Duration {
	if f.quietSince.IsZero() || f.quietSize != f.seenSize {
		f.quietSize, f.quietSince = f.seenSize, now
	}
	return now.Sub(f.quietSince)
}

// hashPrefix returns the crc64 of the first n bytes of fd; ok is false if
// the file is shorter.
func hashPrefix(fd int, n int) (uint64, bool) {
	if n <= 0 {
		return 0, n == 0
	}
	var b [fpWindow]byte
	got := 0
	for got < n {
		m, err := unix.Pread(fd, b[got:n], int64(got))
		if err != nil || m <= 0 {
			return 0, false
		}
		got += m
	}
	return crc64.Checksum(b[:n], crcTable), true
}

// readFile reads f from its current offset, appending records to the batch
// of its destination. It returns true when the batch is full and must be
// delivered before reading on.
func (c *Collector) readFile(f *tailFile, now time.Time, drain bool) bool {
	var st unix.Stat_t
	if err := unix.Fstat(f.fd, &st); err != nil {
		return false
	}
	size := st.Size
	if !f.started && !c.resolveStart(f, size, now, drain) {
		f.seenSize = size
		return false
	}
	// Identity check: shorter than what we read, or other first bytes,
	// means truncation (copytruncate) or a rewrite: read from the start.
	if size < f.cur.Off || f.fpLen > 0 && !f.samePrefix() {
		c.addRotation(rotation{dir: f.w.abs, fp: f.fp, fpLen: f.fpLen, off: f.cur.Off, at: now})
		// The old content is gone: committed positions refer to the new
		// one from here on (a rollback must not undo this).
		f.cur, f.committed, f.fp, f.fpLen, f.pendingOff = lineState{}, lineState{}, 0, 0, -1
		c.dirtyCP = true
		c.stats.add(func(s *Stats) { s.Truncations++ })
	}
	if f.fpLen < fpWindow && size > int64(f.fpLen) {
		n := int(min(size, fpWindow))
		if h, ok := hashPrefix(f.fd, n); ok {
			f.fp, f.fpLen = h, n
			c.dirtyCP = true
		}
	}
	f.seenSize = size
	max := c.cfg.MaxLineBytes
	mode := f.w.longLines
	for {
		c.skipHole(f, size)
		n, err := unix.Pread(f.fd, c.buf, f.cur.Off)
		if err != nil || n <= 0 {
			return false
		}
		data := c.buf[:n]
		start := 0
		full := false
		for !full {
			i := bytes.IndexByte(data[start:], '\n')
			if i < 0 {
				break
			}
			c.completeLine(f, data[start:start+i], mode, now)
			start += i + 1
			full = c.batchFull(f)
		}
		rem := data[start:]
		if !full && len(rem) > max {
			if mode == LongLinesDrop {
				if !f.cur.Discard {
					f.cur.Discard, f.cur.Part = true, 0
					c.stats.add(func(s *Stats) { s.DroppedLines++ })
				}
				start = n
			} else {
				for len(rem) > max {
					if !f.cur.Long {
						f.cur.Long = true
						c.stats.add(func(s *Stats) { s.SplitLines++ })
					}
					c.emit(f, rem[:max], true, false, now)
					start += max
					rem = rem[max:]
				}
			}
		}
		if start > 0 {
			f.cur.Off += int64(start)
			c.touched[f] = true
		}
		if full {
			return true
		}
		if n == len(c.buf) {
			continue
		}
		// End of file with a last line that has no newline yet.
		if len(rem) == 0 {
			f.pendingOff = -1
			return false
		}
		if f.cur.Discard {
			f.cur.Off += int64(len(rem))
			c.touched[f] = true
			return false
		}
		if drain || f.pendingOff == f.cur.Off && now.Sub(f.pendingSince) >= c.cfg.FlushTimeout {
			if c.emit(f, rem, true, false, now) {
				c.stats.add(func(s *Stats) { s.FlushedPartial++ })
			}
			f.cur.Off += int64(len(rem))
			f.pendingOff = -1
			c.touched[f] = true
			return c.batchFull(f)
		}
		if f.pendingOff != f.cur.Off {
			f.pendingOff, f.pendingSince = f.cur.Off, now
		}
		return false
	}
}

// skipHole moves f's read position past a hole there (see nul.go): a hole
// reads as NUL bytes, which are never forwarded. Where SEEK_DATA is not
// supported the hole is read and its NUL bytes removed like any others.
func (c *Collector) skipHole(f *tailFile, size int64) {
	off := f.cur.Off
	if off >= size {
		return
	}
	to, err := unix.Seek(f.fd, off, unix.SEEK_DATA)
	switch {
	case errors.Is(err, unix.ENXIO):
		// No data at or after off: a hole up to the end, or the file is no
		// longer than off now. size was taken before, so a truncation
		// since (copytruncate) looks the same; skipping to size then would
		// skip the lines its copy must continue with. Skip only what the
		// file still has, and leave a truncation to the identity check of
		// the next read.
		end, err := unix.Seek(f.fd, 0, unix.SEEK_END)
		if err != nil || end <= off {
			return
		}
		to = end
	case err != nil || to <= off:
		return
	}
	to = min(to, size)
	f.cur.Off = to
	c.touched[f] = true
	c.stats.add(func(s *Stats) { s.NulBytes += uint64(to - off) })
}

func (f *tailFile) samePrefix() bool {
	h, ok := hashPrefix(f.fd, f.fpLen)
	return ok && h == f.fp
}

// completeLine handles a line that ended with a newline.
func (c *Collector) completeLine(f *tailFile, line []byte, mode LongLineMode, now time.Time) {
	max := c.cfg.MaxLineBytes
	switch {
	case f.cur.Discard:
		// The tail of a dropped line.
	case len(line) > max && mode == LongLinesDrop:
		c.stats.add(func(s *Stats) { s.DroppedLines++ })
	case len(line) > max:
		if !f.cur.Long {
			c.stats.add(func(s *Stats) { s.SplitLines++ })
		}
		for len(line) > max {
			c.emit(f, line[:max], true, false, now)
			line = line[max:]
		}
		c.emit(f, line, true, true, now)
	case f.cur.Part > 0 || f.cur.Long:
		c.emit(f, line, true, true, now)
	default:
		c.emit(f, line, false, false, now)
	}
	f.cur.Discard, f.cur.Long, f.cur.Part = false, false, 0
}
