package logfwd

import (
	"bytes"
	"context"
	"fmt"
	"time"
)

// batch is what was read for one destination and not delivered yet: JSON
// lines encoded as they were read when the sink is the file sink and no
// Observer wants Records, Records otherwise.
type batch struct {
	sink      Sink
	enc       *fileSink // nil: records
	recs      []Record
	json      []byte
	n         int // records
	lineBytes int // their text bytes (Stats.Bytes)
	bytes     int // against MaxBatchBytes: text + 128 per record

	tsAt time.Time // the time json's last time field was formatted for
	ts   []byte
}

func (b *batch) reset() {
	clear(b.recs)
	b.recs, b.json, b.n, b.lineBytes, b.bytes = b.recs[:0], b.json[:0], 0, 0, 0
}

// batchOf returns the batch of w's destination, cached on w.
func (c *Collector) batchOf(w *watchState) *batch {
	if w.batch != nil {
		return w.batch
	}
	b := c.batches[w.dest]
	if b == nil {
		b = &batch{sink: c.sinks[w.dest]}
		if enc, ok := b.sink.(*fileSink); ok && c.cfg.Observer == nil {
			b.enc = enc
		}
		c.batches[w.dest] = b
	}
	w.batch = b
	return b
}

func (c *Collector) batchFull(f *tailFile) bool {
	return c.batchOf(f.w).bytes >= c.cfg.MaxBatchBytes
}

// emit adds one record (a line, or a part of one) to the batch of f's
// destination, with NUL bytes removed (see nul.go); it reports whether a
// record was added. The caller advances f's offset and marks f touched.
func (c *Collector) emit(f *tailFile, line []byte, partial, last bool, now time.Time) bool {
	if bytes.IndexByte(line, 0) >= 0 {
		var removed int
		line, removed = stripNUL(line)
		c.stats.add(func(s *Stats) { s.NulBytes += uint64(removed) })
		if len(line) == 0 && !(partial && last && f.cur.Part > 0) {
			if !partial || last {
				c.stats.add(func(s *Stats) { s.NulLines++ })
			}
			return false
		}
	}
	b := c.batchOf(f.w)
	r := Record{Time: now, Container: f.w.Container, Path: f.path, Tag: f.w.Tag}
	if partial {
		r.Partial, r.PartIndex, r.PartLast = true, f.cur.Part, last
		f.cur.Part++
	}
	if b.enc != nil {
		if !b.tsAt.Equal(now) || b.ts == nil {
			b.ts, b.tsAt = b.enc.AppendTime(b.ts[:0], now), now
		}
		b.json = b.enc.AppendRecord(b.json, b.ts, &f.head, &r, line)
	} else {
		r.Line = string(line)
		b.recs = append(b.recs, r)
	}
	b.n++
	b.lineBytes += len(line)
	b.bytes += len(line) + 128
	return true
}

// checkpointEvery bounds how long a delivery to a positioned sink goes
// without a checkpoint.
const checkpointEvery = time.Second

// deliver sends every batch, retrying until ctx is done, and commits the
// offsets of the files it came from. On failure the uncommitted reads are
// rolled back so they are read again.
func (c *Collector) deliver(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		c.rollback()
		return err
	}
	for name, b := range c.batches {
		if b.n == 0 {
			continue
		}
		if err := c.send(ctx, name, b); err != nil {
			c.rollback()
			return fmt.Errorf("deliver to %s sink: %w", name, err)
		}
		if obs := c.cfg.Observer; obs != nil {
			obs(name, b.recs)
		}
		for f := range c.touched {
			if f.w.dest == name {
				f.committed = f.cur
				delete(c.touched, f)
			}
		}
		c.dirtyCP = true
		n, bytes, now := uint64(b.n), uint64(b.lineBytes), time.Now()
		c.stats.add(func(s *Stats) { s.Lines += n; s.Bytes += bytes; s.LastDelivery = now })
		b.reset()
		// Checkpoint now: a crash before the next checkpoint must not
		// replay what this sink accepted. A positioned sink (the file
		// sink) is cut back to the checkpoint's position at the next
		// start, so a later checkpoint (at most checkpointEvery, and at
		// the end of the cycle) repeats nothing either; it only reads
		// again what the cut removed.
		if _, cut := b.sink.(positioned); cut && now.Sub(c.cpAt) < checkpointEvery {
			continue
		}
		if err := c.saveCheckpoint(); err != nil {
			return err
		}
	}
	for f := range c.touched {
		f.committed = f.cur
		c.dirtyCP = true
	}
	clear(c.touched)
	// What was read before each truncation has been delivered.
	for i := range c.rotations {
		if !c.rotations[i].settled {
			c.rotations[i].settled = true
			c.dirtyCP = true
		}
	}
	return nil
}

// send delivers one batch, retrying with backoff until ctx is done.
func (c *Collector) send(ctx context.Context, name string, b *batch) error {
	var backoff time.Duration
	for {
		var err error
		if b.enc != nil {
			err = b.enc.SendEncoded(ctx, b.json)
		} else {
			err = b.sink.Send(ctx, b.recs)
		}
		if err == nil {
			return nil
		}
		c.stats.add(func(s *Stats) { s.SinkErrors++ })
		if ctx.Err() != nil {
			return err
		}
		backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
		c.log.Warn("sink refused records; retrying", "sink", name, "error", err, "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (c *Collector) rollback() {
	for f := range c.touched {
		f.cur = f.committed
		f.pendingOff = -1
	}
	clear(c.touched)
	for _, b := range c.batches {
		b.reset()
	}
}
