package logfwd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// MeasureThroughput collects cfg's log volume as it stands with a new
// collector (New, then Drain: read everything, encode, write and fsync the
// sink, checkpoint) and reports the volume delivered against wall and CPU
// time. The caller writes the files first and keeps its process otherwise
// idle during the call: CPU is RUSAGE_SELF, all threads, so the Go
// runtime's GC work is included and so is anything else the process does.
func MeasureThroughput(ctx context.Context, cfg Config) (Throughput, error) {
	var sinkBefore int64
	if cfg.FileSink != nil {
		if dir, name, err := cfg.FileSink.dirName(); err == nil {
			if st, err := os.Stat(filepath.Join(dir, name)); err == nil {
				sinkBefore = st.Size()
			}
		}
	}
	cpu0 := processCPU()
	start := time.Now()
	c, err := New(cfg, nil)
	if err != nil {
		return Throughput{}, err
	}
	if err := c.Drain(ctx); err != nil {
		return Throughput{}, err
	}
	t := Throughput{Wall: time.Since(start), CPU: processCPU() - cpu0}
	s := c.Stats()
	t.Lines, t.Bytes = s.Lines, s.Bytes+s.Lines
	if cfg.FileSink != nil {
		dir, name, _ := cfg.FileSink.dirName()
		if st, err := os.Stat(filepath.Join(dir, name)); err == nil {
			t.SinkBytes = st.Size() - sinkBefore
		}
	}
	return t, nil
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// latencyPrefix starts every line MeasureLatency writes: "cci-lat <seq> ".
const latencyPrefix = "cci-lat "

// MeasureLatency runs a collector on cfg (New, Run) and appends lines
// lines of size bytes (newline included, at least 32) to the file name in
// the host directory of cfg.Watches[0], one every interval, each with one
// write(2). A line's latency is from just before its write to the moment
// its destination's sink accepted it (Config.Observer, which
// MeasureLatency sets; cfg's own is called too). It waits for the last
// line up to 10 s (or ctx), then drains. Set cfg.DisableInotify for the
// poll-only figure; cfg.PollInterval then bounds the latency.
func MeasureLatency(ctx context.Context, cfg Config, name string, lines, size int, interval time.Duration) (Latency, error) {
	if len(cfg.Watches) == 0 {
		return Latency{}, errors.New("measure latency: cfg has no watch")
	}
	if size < 32 {
		size = 32
	}
	var mu sync.Mutex
	written := make([]time.Time, lines)
	got := make([]time.Duration, lines)
	seen := make([]bool, lines)
	delivered := 0
	allIn := make(chan struct{})
	user := cfg.Observer
	cfg.Observer = func(dest string, recs []Record) {
		now := time.Now()
		mu.Lock()
		for i := range recs {
			rest, ok := strings.CutPrefix(recs[i].Line, latencyPrefix)
			if !ok {
				continue
			}
			n, err := strconv.Atoi(rest[:max(strings.IndexByte(rest, ' '), 0)])
			if err != nil || n < 0 || n >= lines || seen[n] {
				continue
			}
			seen[n], got[n] = true, now.Sub(written[n])
			if delivered++; delivered == lines {
				close(allIn)
			}
		}
		mu.Unlock()
		if user != nil {
			user(dest, recs)
		}
	}
	w := cfg.Watches[0]
	f, err := os.OpenFile(filepath.Join(HostDir(cfg.Root, w.Container, w.Dir), name),
		os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return Latency{}, fmt.Errorf("measure latency: %w", err)
	}
	defer f.Close()
	c, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return Latency{}, err
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(rctx) }()
	time.Sleep(50 * time.Millisecond) // first scan and inotify watch
	pad := strings.Repeat("x", size)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := 0; i < lines; i++ {
		line := latencyPrefix + strconv.Itoa(i) + " "
		line += pad[:max(size-len(line)-1, 0)] + "\n"
		mu.Lock()
		written[i] = time.Now()
		mu.Unlock()
		if _, err := f.WriteString(line); err != nil {
			c.Close()
			return Latency{}, fmt.Errorf("measure latency: %w", err)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			c.Close()
			return Latency{}, ctx.Err()
		}
	}
	select {
	case <-allIn:
	case <-time.After(10 * time.Second):
	case <-ctx.Done():
	}
	dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer dcancel()
	derr := c.Drain(dctx)
	if err := <-done; err != nil {
		return Latency{}, err
	}
	mu.Lock()
	defer mu.Unlock()
	res := Latency{Lines: lines, Delivered: delivered}
	var ds []time.Duration
	for i := range got {
		if seen[i] {
			ds = append(ds, got[i])
		}
	}
	if len(ds) > 0 {
		slices.Sort(ds)
		res.P50, res.P99, res.Max = ds[len(ds)/2], ds[(len(ds)*99)/100], ds[len(ds)-1]
	}
	return res, derr
}
