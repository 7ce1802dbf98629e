package iothrottle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"testing/iotest"
	"time"
)

func pattern(i int64) byte { return byte(i*31 + i>>9 + i>>17) }

// patternReader yields n pattern bytes, at most maxRead per call (0: any).
// It implements neither WriterTo nor anything else io.Copy would exploit.
type patternReader struct {
	off, n  int64
	maxRead int
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	if r.maxRead > 0 && len(p) > r.maxRead {
		p = p[:r.maxRead]
	}
	if rem := r.n - r.off; int64(len(p)) > rem {
		p = p[:rem]
	}
	for i := range p {
		p[i] = pattern(r.off + int64(i))
	}
	r.off += int64(len(p))
	return len(p), nil
}

type writeEvent struct {
	at time.Time
	n  int
}

// eventLog collects the writes of all loops of one limiter in time order.
type eventLog struct {
	mu     sync.Mutex
	events []writeEvent
}

func (e *eventLog) add(at time.Time, n int) {
	e.mu.Lock()
	e.events = append(e.events, writeEvent{at, n})
	e.mu.Unlock()
}

// verifyWriter checks every byte against the pattern (so any loss,
// duplication or reordering fails), accepts at most maxWrite bytes per call
// with a nil error (a partial write), and logs each write's time.
type verifyWriter struct {
	off      int64
	maxWrite int
	clk      clock
	log      *eventLog
	err      error
}

func (w *verifyWriter) Write(p []byte) (int, error) {
	if w.maxWrite > 0 && len(p) > w.maxWrite {
		p = p[:w.maxWrite]
	}
	for i, b := range p {
		if want := pattern(w.off + int64(i)); b != want && w.err == nil {
			w.err = fmt.Errorf("byte %d = %#x, want %#x", w.off+int64(i), b, want)
		}
	}
	w.off += int64(len(p))
	if w.log != nil {
		w.log.add(w.clk.now(), len(p))
	}
	return len(p), nil
}

func TestLimiterExactnessSimulated(t *testing.T) {
	tests := []struct {
		name     string
		rate     int64
		perLoop  int64 // bytes per copy loop
		loops    int   // 1: stdout only; 2: stdout+stderr share the limiter
		buf      int
		maxRead  int
		maxWrite int
	}{
		{name: "1MB/s one loop", rate: 1_000_000, perLoop: 35_000_000, loops: 1, buf: DefaultBufferSize},
		{name: "1MB/s stdout+stderr", rate: 1_000_000, perLoop: 17_000_000, loops: 2, buf: DefaultBufferSize},
		{name: "6MB/s short reads partial writes", rate: 6_000_000, perLoop: 70_000_000, loops: 1, buf: DefaultBufferSize, maxRead: 7000, maxWrite: 999},
		{name: "1000B/s tiny burst two loops", rate: 1000, perLoop: 16_000, loops: 2, buf: 4096},
		{name: "10MiB/s capped burst", rate: 10 << 20, perLoop: 130 << 20, loops: 2, buf: 1 << 20},
		{name: "odd rate small buffer", rate: 777_777, perLoop: 13_000_000, loops: 2, buf: 1000, maxRead: 333},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newSimClock(tt.loops)
			l := newLimiter(tt.rate, clk)
			log := &eventLog{}
			var wg sync.WaitGroup
			errs := make([]error, tt.loops)
			ws := make([]*verifyWriter, tt.loops)
			for i := range tt.loops {
				ws[i] = &verifyWriter{maxWrite: tt.maxWrite, clk: clk, log: log}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer clk.done()
					src := &patternReader{n: tt.perLoop, maxRead: tt.maxRead}
					n, err := l.Copy(context.Background(), ws[i], src, make([]byte, tt.buf))
					if err == nil && n != tt.perLoop {
						err = fmt.Errorf("copied %d, want %d", n, tt.perLoop)
					}
					errs[i] = err
				}()
			}
			wg.Wait()
			for i := range tt.loops {
				if errs[i] != nil || ws[i].err != nil || ws[i].off != tt.perLoop {
					t.Fatalf("loop %d: err %v, verify %v, got %d bytes", i, errs[i], ws[i].err, ws[i].off)
				}
			}
			total := tt.perLoop * int64(tt.loops)
			burst := int64(burstFor(tt.rate))
			window := 10 * time.Second
			allowed := float64(tt.rate) * window.Seconds()
			tight := allowed + float64((1+tt.loops)*int(burst))
			if tight > allowed*1.02 {
				t.Fatalf("burst %d too large for the 2%% bound", burst)
			}
			ev := log.events
			end := ev[len(ev)-1].at.Sub(simEpoch)
			// Every 10 s window starting at a write: at most rate*10s plus
			// the analytic slack, and (for windows that end before the last
			// write) at least 98% of rate*10s.
			var sum int64
			j := 0
			for i := range ev {
				for j < len(ev) && ev[j].at.Sub(ev[i].at) < window {
					sum += int64(ev[j].n)
					j++
				}
				if float64(sum) > tight {
					t.Fatalf("window at %v carries %d bytes > %.0f", ev[i].at.Sub(simEpoch), sum, tight)
				}
				if ev[i].at.Add(window).Before(ev[len(ev)-1].at) && float64(sum) < 0.98*allowed {
					t.Fatalf("window at %v carries %d bytes < 98%% of %.0f", ev[i].at.Sub(simEpoch), sum, allowed)
				}
				sum -= int64(ev[i].n)
			}
			// The bucket starts full, then every byte costs 1/rate.
			want := time.Duration(float64(total-burst) / float64(tt.rate) * float64(time.Second))
			if d := end - want; d < -time.Millisecond || d > time.Millisecond {
				t.Errorf("last write at %v, want %v", end, want)
			}
			st := l.Stats()
			if st.BytesForwarded != total || st.RateBytesPerSec != tt.rate || st.Burst != int(burst) {
				t.Errorf("stats %+v, want %d bytes at rate %d burst %d", st, total, tt.rate, burst)
			}
			if tt.loops == 1 && (st.WaitTime-end > time.Millisecond || end-st.WaitTime > time.Millisecond) {
				t.Errorf("wait time %v, want %v", st.WaitTime, end)
			}
		})
	}
}

func TestBurstFor(t *testing.T) {
	tests := []struct {
		rate int64
		want int
	}{
		{1, 1}, {49, 1}, {1000, 20}, {1_000_000, 20_000}, {6_000_000, MaxBurst}, {1 << 40, MaxBurst},
	}
	for _, tt := range tests {
		if got := burstFor(tt.rate); got != tt.want {
			t.Errorf("burstFor(%d) = %d, want %d", tt.rate, got, tt.want)
		}
	}
}

type zeroWriter struct{}

func (zeroWriter) Write([]byte) (int, error) { return 0, nil }

type liarWriter struct{}

func (liarWriter) Write(p []byte) (int, error) { return len(p) + 1, nil }

type failWriter struct{ after int }

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.after {
		n := w.after
		w.after = 0
		return n, io.ErrClosedPipe
	}
	w.after -= len(p)
	return len(p), nil
}

func TestCopyNoLoss(t *testing.T) {
	data := make([]byte, 100_000)
	for i := range data {
		data[i] = pattern(int64(i))
	}
	type tc struct {
		name    string
		src     func() io.Reader
		dst     func() io.Writer
		rate    int64
		wantErr error
		wantN   int64 // -1: len(data)
	}
	tests := []tc{
		{name: "one byte reader", src: func() io.Reader { return iotest.OneByteReader(bytes.NewReader(data)) }, wantN: -1},
		{name: "half reader throttled", src: func() io.Reader { return iotest.HalfReader(bytes.NewReader(data)) }, rate: 1_000_000, wantN: -1},
		{name: "data with EOF", src: func() io.Reader { return iotest.DataErrReader(bytes.NewReader(data)) }, rate: 3_000_000, wantN: -1},
		{name: "partial writes", src: func() io.Reader { return bytes.NewReader(data) },
			dst: func() io.Writer { return &verifyWriter{maxWrite: 7} }, rate: 1_000_000, wantN: -1},
		{name: "read error after data", src: func() io.Reader { return iotest.TimeoutReader(bytes.NewReader(data)) },
			wantErr: iotest.ErrTimeout, wantN: DefaultBufferSize},
		{name: "zero-progress writer", src: func() io.Reader { return bytes.NewReader(data) },
			dst: func() io.Writer { return zeroWriter{} }, wantErr: io.ErrShortWrite, wantN: 0},
		{name: "invalid write count", src: func() io.Reader { return bytes.NewReader(data) },
			dst: func() io.Writer { return liarWriter{} }, wantErr: errInvalidWrite, wantN: 0},
		{name: "write error mid chunk", src: func() io.Reader { return bytes.NewReader(data) },
			dst: func() io.Writer { return &failWriter{after: 5000} }, rate: 1_000_000, wantErr: io.ErrClosedPipe, wantN: 5000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newSimClock(1)
			defer clk.done()
			l := newLimiter(tt.rate, clk)
			var dst io.Writer = &verifyWriter{}
			if tt.dst != nil {
				dst = tt.dst()
			}
			n, err := l.Copy(context.Background(), dst, tt.src(), make([]byte, DefaultBufferSize))
			want := tt.wantN
			if want < 0 {
				want = int64(len(data))
			}
			if !errors.Is(err, tt.wantErr) || n != want {
				t.Fatalf("Copy = %d, %v; want %d, %v", n, err, want, tt.wantErr)
			}
			if vw, ok := dst.(*verifyWriter); ok && (vw.err != nil || vw.off != n) {
				t.Fatalf("destination got %d bytes (%v), Copy says %d", vw.off, vw.err, n)
			}
			if got := l.Stats().BytesForwarded; got != n {
				t.Errorf("stats forwarded %d, want %d", got, n)
			}
		})
	}
}

// TestCopyFilesChunked checks that *os.File ends (WriterTo/ReaderFrom) do
// not bypass the chunking: every write is at most one bucket.
func TestCopyFilesChunked(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	const n = 300_000
	go func() {
		_, _ = io.Copy(pw, &patternReader{n: n})
		pw.Close()
	}()
	clk := newSimClock(1)
	l := newLimiter(1_000_000, clk)
	log := &eventLog{}
	vw := &verifyWriter{clk: clk, log: log}
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(vw, outR) // drain; vw is not a ReaderFrom
		done <- err
	}()
	got, err := l.Copy(context.Background(), outW, pr, make([]byte, 1<<20))
	clk.done()
	outW.Close()
	if err != nil || got != n {
		t.Fatalf("Copy = %d, %v", got, err)
	}
	if err := <-done; err != nil || vw.err != nil || vw.off != n {
		t.Fatalf("drain: %v, verify %v, %d bytes", err, vw.err, vw.off)
	}
	st := l.Stats()
	if st.Waits < n/int64(st.Burst)-1 {
		t.Errorf("%d waits for %d bytes at burst %d: chunking bypassed", st.Waits, n, st.Burst)
	}
}

// countingReader counts the bytes the copy took from the source.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func TestCopyCancelMidWait(t *testing.T) {
	clk := stallClock{sleeping: make(chan struct{})}
	l := newLimiter(1000, clk) // burst 20
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := &countingReader{r: &patternReader{n: 10_000}}
	dst := &verifyWriter{}
	type result struct {
		n   int64
		err error
	}
	res := make(chan result, 1)
	go func() {
		n, err := l.Copy(ctx, dst, src, make([]byte, DefaultBufferSize))
		res <- result{n, err}
	}()
	<-clk.sleeping // second chunk is waiting for tokens
	cancel()
	r := <-res
	if !errors.Is(r.err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", r.err)
	}
	// First chunk (the full bucket) plus the chunk read before the wait:
	// everything taken from src reached dst, nothing more was read.
	if r.n != 40 || src.n != r.n || dst.off != r.n || dst.err != nil {
		t.Fatalf("copied %d, read %d, dst got %d (%v); want 40 each", r.n, src.n, dst.off, dst.err)
	}
	if st := l.Stats(); st.CanceledFlushes != 1 || st.Waits != 1 || st.BytesForwarded != 40 {
		t.Errorf("stats %+v", st)
	}
}

func TestCopyCancelRealClock(t *testing.T) {
	l := NewLimiter(10) // burst 1: one byte per 100 ms
	ctx, cancel := context.WithCancel(context.Background())
	src := &countingReader{r: &patternReader{n: 1000}}
	dst := &verifyWriter{}
	go func() {
		time.Sleep(150 * time.Millisecond)
		cancel()
	}()
	done := make(chan struct{})
	var (
		n   int64
		err error
	)
	go func() {
		n, err = l.Copy(ctx, dst, src, nil)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Copy did not return after cancellation")
	}
	if !errors.Is(err, context.Canceled) || n != src.n || dst.off != n || n < 1 || n > 4 {
		t.Fatalf("Copy = %d, %v; read %d, dst %d", n, err, src.n, dst.off)
	}
}

func TestCopyCanceledBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	src := &countingReader{r: &patternReader{n: 10}}
	n, err := NewLimiter(0).Copy(ctx, io.Discard, src, nil)
	if !errors.Is(err, context.Canceled) || n != 0 || src.n != 0 {
		t.Fatalf("Copy = %d, %v, read %d", n, err, src.n)
	}
}

func TestNilLimiter(t *testing.T) {
	var l *Limiter
	dst := &verifyWriter{}
	n, err := l.Copy(context.Background(), dst, &patternReader{n: 12345}, make([]byte, 100))
	if err != nil || n != 12345 || dst.off != n || dst.err != nil {
		t.Fatalf("Copy = %d, %v", n, err)
	}
	if l.Stats() != (Stats{}) {
		t.Errorf("nil limiter stats %+v", l.Stats())
	}
}
