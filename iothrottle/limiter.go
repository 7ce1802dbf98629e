package iothrottle

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

const (
	// BurstDivisor sets the token bucket's depth to rate/BurstDivisor bytes,
	// i.e. 20 ms worth of the rate. With k concurrent copy loops any window of
	// length T carries at most rate*T + (1+k)*burst bytes (one full bucket
	// plus one in-flight chunk per loop), so for stdout+stderr (k=2) a 10 s
	// window is at most 0.6% over the rate: well inside the 2% of R14.
	BurstDivisor = 50
	// MaxBurst caps the bucket (and so the chunk size) for high rates.
	MaxBurst = 64 << 10
	// DefaultBufferSize is the copy buffer size callers should allocate once
	// per copy loop.
	DefaultBufferSize = 32 << 10
	// maxZeroWrites bounds retries of a writer that makes no progress
	// without an error before Copy reports io.ErrShortWrite.
	maxZeroWrites = 100
)

var (
	errInvalidRead  = errors.New("invalid read result")
	errInvalidWrite = errors.New("invalid write result")
)

// Stats is a snapshot of a Limiter's counters.
type Stats struct {
	// RateBytesPerSec is the configured rate; 0 means unlimited.
	RateBytesPerSec int64 `json:"rate_bytes_per_sec"`
	// Burst is the token bucket depth in bytes (0 when unlimited).
	Burst int `json:"burst"`
	// BytesForwarded counts bytes written to destinations.
	BytesForwarded int64 `json:"bytes_forwarded"`
	// Waits counts chunks that had to wait for tokens.
	Waits int64 `json:"waits"`
	// WaitTime is the total time copy loops spent waiting for tokens.
	WaitTime time.Duration `json:"wait_time_ns"`
	// CanceledFlushes counts chunks written without waiting because the
	// context ended while they waited (see Limiter.Copy).
	CanceledFlushes int64 `json:"canceled_flushes"`
}

// Limiter is a lossless byte-rate limiter shared by all copy loops of one
// container (stdout and stderr share the budget). A nil *Limiter copies
// unthrottled and keeps no statistics.
type Limiter struct {
	bps   int64
	burst int
	lim   *rate.Limiter // nil when unlimited
	clk   clock

	// mu serialises reading the clock and reserving, so the rate.Limiter
	// sees non-decreasing times even with two loops racing (x/time/rate
	// re-counts elapsed time if times go backwards).
	mu sync.Mutex

	bytes    atomic.Int64
	waits    atomic.Int64
	waitNs   atomic.Int64
	canceled atomic.Int64
}

// NewLimiter returns a limiter of bytesPerSec bytes per second (10^6 per
// MB). bytesPerSec <= 0 means unlimited; the limiter then only counts.
func NewLimiter(bytesPerSec int64) *Limiter {
	return newLimiter(bytesPerSec, realClock{})
}

func newLimiter(bytesPerSec int64, clk clock) *Limiter {
	l := &Limiter{clk: clk}
	if bytesPerSec > 0 {
		l.bps = bytesPerSec
		l.burst = burstFor(bytesPerSec)
		l.lim = rate.NewLimiter(rate.Limit(bytesPerSec), l.burst)
		// Start from the limiter's own notion of "now" so the initial
		// full bucket is the only credit.
		l.lim.SetBurstAt(clk.now(), l.burst)
	}
	return l
}

// burstFor returns the bucket depth for a rate: rate/BurstDivisor, at least
// 1 byte and at most MaxBurst.
func burstFor(bytesPerSec int64) int {
	b := bytesPerSec / BurstDivisor
	if b < 1 {
		b = 1
	}
	if b > MaxBurst {
		b = MaxBurst
	}
	return int(b)
}

// Stats returns a snapshot of the counters.
func (l *Limiter) Stats() Stats {
	if l == nil {
		return Stats{}
	}
	return Stats{
		RateBytesPerSec: l.bps,
		Burst:           l.burst,
		BytesForwarded:  l.bytes.Load(),
		Waits:           l.waits.Load(),
		WaitTime:        time.Duration(l.waitNs.Load()),
		CanceledFlushes: l.canceled.Load(),
	}
}

// Copy copies src to dst until src returns io.EOF (then it returns a nil
// error) or an error, throttled by l. buf is the caller's reusable buffer
// (DefaultBufferSize is a good size); Copy allocates nothing per write.
// It returns the number of bytes written to dst.
//
// Guarantees: bytes are written in order, none dropped or duplicated; short
// reads and partial writes (n < len with a nil error) are handled, the rest
// of a partial write is retried. Throttling is backpressure only: Copy
// stops reading while it waits for tokens.
//
// Cancellation: Copy checks ctx before each read and while waiting. When ctx
// ends during a wait, the chunk already read from src is written to dst at
// once, without waiting (its tokens stay consumed), and Copy returns
// ctx.Err(): bytes taken from the container are never lost. Bytes still in
// src are left there. A blocked src.Read is not interrupted by ctx; close
// src (the FIFO) for that.
func (l *Limiter) Copy(ctx context.Context, dst io.Writer, src io.Reader, buf []byte) (int64, error) {
	if len(buf) == 0 {
		buf = make([]byte, DefaultBufferSize)
	}
	chunk := buf
	throttled := l != nil && l.lim != nil
	if throttled && len(chunk) > l.burst {
		// rate.Limiter refuses reservations above the burst; read at most
		// one bucket per chunk, which also bounds what we hold unwritten.
		chunk = chunk[:l.burst]
	}
	var (
		written int64
		tm      *timerSlot // allocated on the first wait only
	)
	defer func() { tm.stop() }()
	for {
		if err := ctx.Err(); err != nil {
			return written, err
		}
		nr, rerr := src.Read(chunk)
		if nr < 0 || nr > len(chunk) {
			return written, errInvalidRead
		}
		if nr > 0 {
			var werr error
			if throttled {
				werr = l.wait(ctx, nr, &tm)
			}
			nw, err := writeFull(dst, chunk[:nr])
			written += int64(nw)
			if l != nil {
				l.bytes.Add(int64(nw))
			}
			if err != nil {
				return written, err
			}
			if werr != nil {
				return written, werr
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				return written, nil
			}
			return written, rerr
		}
	}
}

// wait takes n tokens, sleeping until they are due. On cancellation the
// tokens stay taken and ctx.Err() is returned; the caller still writes.
func (l *Limiter) wait(ctx context.Context, n int, tm **timerSlot) error {
	l.mu.Lock()
	now := l.clk.now()
	r := l.lim.ReserveN(now, n) // n <= burst, so r.OK()
	d := r.DelayFrom(now)
	l.mu.Unlock()
	if d <= 0 {
		return nil
	}
	l.waits.Add(1)
	if *tm == nil {
		*tm = new(timerSlot)
	}
	err := l.clk.sleep(ctx, d, *tm)
	if err != nil {
		l.canceled.Add(1)
		l.waitNs.Add(int64(l.clk.now().Sub(now)))
		return err
	}
	l.waitNs.Add(int64(d))
	return nil
}

// writeFull writes all of p, retrying partial writes that report no error.
func writeFull(dst io.Writer, p []byte) (int, error) {
	total, zero := 0, 0
	for total < len(p) {
		n, err := dst.Write(p[total:])
		if n < 0 || n > len(p)-total {
			return total, errInvalidWrite
		}
		total += n
		if err != nil {
			return total, err
		}
		if n == 0 {
			zero++
			if zero >= maxZeroWrites {
				return total, io.ErrShortWrite
			}
			continue
		}
		zero = 0
	}
	return total, nil
}

// clock is the limiter's time source; tests drive a simulated one.
type clock interface {
	now() time.Time
	// sleep waits d or until ctx ends (then it returns ctx.Err()). tm is a
	// per-copy-loop timer the clock may reuse.
	sleep(ctx context.Context, d time.Duration, tm *timerSlot) error
}

// timerSlot holds one reusable timer per copy loop.
type timerSlot struct{ t *time.Timer }

func (s *timerSlot) stop() {
	if s != nil && s.t != nil {
		s.t.Stop()
	}
}

type realClock struct{}

func (realClock) now() time.Time { return time.Now() }

func (realClock) sleep(ctx context.Context, d time.Duration, tm *timerSlot) error {
	if tm.t == nil {
		tm.t = time.NewTimer(d)
	} else {
		tm.t.Reset(d) // Go >= 1.23: Reset discards any stale value
	}
	select {
	case <-tm.t.C:
		return nil
	case <-ctx.Done():
		tm.t.Stop()
		return ctx.Err()
	}
}
