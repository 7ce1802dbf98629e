package logfwd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// countSink counts and notifies; it keeps nothing.
type countSink struct {
	lines atomic.Int64
	ch    chan struct{}
}

func (s *countSink) Send(_ context.Context, recs []Record) error {
	s.lines.Add(int64(len(recs)))
	if s.ch != nil {
		select {
		case s.ch <- struct{}{}:
		default:
		}
	}
	return nil
}

func (s *countSink) Close() error { return nil }

// benchVolume writes n lines of lineLen bytes (newline included) into
// one file of a fresh log volume and returns a config for it with a real
// file sink.
//
// LOGFWD_BENCH_DIR puts the volume and the sink in another directory (a
// tmpfs such as /dev/shm takes the disk, and other loads on it, out of the
// wall-time figure; the CPU figure still includes the page-cache work).
func benchVolume(b *testing.B, n, lineLen int) Config {
	tmp := b.TempDir()
	if d := os.Getenv("LOGFWD_BENCH_DIR"); d != "" {
		var err error
		if tmp, err = os.MkdirTemp(d, "logfwd-bench-"); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(tmp) })
	}
	root := filepath.Join(tmp, "root")
	dir := HostDir(root, "app", "/logs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "a.log"))
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	line := strings.Repeat("x", lineLen-1) + "\n"
	for i := 0; i < n; i++ {
		w.WriteString(line)
	}
	if err := errors.Join(w.Flush(), f.Close()); err != nil {
		b.Fatal(err)
	}
	return Config{Root: root, Watches: []Watch{{Container: "app", Dir: "/logs", Pattern: "*.log"}},
		Pod:      PodIdentity{Namespace: "default", Name: "bench-pod", UID: "4f1c2a7e-0d3b-4c55-9e0a-6b1f2d3c4e5f"},
		FileSink: &FileSinkConfig{Dir: tmp, Name: "default+bench.jsonl"}, CheckpointPath: filepath.Join(tmp, "cp.json")}
}

// BenchmarkThroughput: one collector (one goroutine) drains a file of
// 100-byte lines. "file" is the real path (JSON encoding, the file sink's
// write+fsync, checkpoints; MeasureThroughput); "discard" measures the
// reader alone. MB/s is input per wall second, MB/cpu-s input per second
// of the process's CPU time (per core, issue 14: >= 200).
func BenchmarkThroughput(b *testing.B) {
	for _, sinkKind := range []string{"discard", "file"} {
		b.Run(sinkKind, func(b *testing.B) {
			cfg := benchVolume(b, b.N, 100)
			b.SetBytes(100)
			b.ResetTimer()
			var t Throughput
			if sinkKind == "file" {
				var err error
				if t, err = MeasureThroughput(context.Background(), cfg); err != nil {
					b.Fatal(err)
				}
			} else {
				cpu0, start := processCPU(), time.Now()
				c, err := newCollector(cfg, slog.New(slog.DiscardHandler), map[string]Sink{DestinationFile: &countSink{}})
				if err != nil {
					b.Fatal(err)
				}
				if err := c.Drain(context.Background()); err != nil {
					b.Fatal(err)
				}
				s := c.Stats()
				t = Throughput{Lines: s.Lines, Bytes: s.Bytes + s.Lines, Wall: time.Since(start), CPU: processCPU() - cpu0}
			}
			b.StopTimer()
			if t.Lines != uint64(b.N) {
				b.Fatalf("delivered %d lines, want %d", t.Lines, b.N)
			}
			b.ReportMetric(float64(t.Lines)/t.Wall.Seconds(), "lines/s")
			b.ReportMetric(t.MBPerSecond(), "MB/s")
			b.ReportMetric(t.MBPerCPUSecond(), "MB/cpu-s")
			if t.SinkBytes > 0 {
				b.ReportMetric(float64(t.SinkBytes)/float64(t.Lines), "sink-B/line")
			}
		})
	}
}

// BenchmarkLatency: time from write(2) of a line to the sink having
// accepted it (real file sink, MeasureLatency), with inotify and with the
// poll only (poll interval 250 ms); one line every 5 ms. Reports p50/p99.
func BenchmarkLatency(b *testing.B) {
	for _, mode := range []string{"inotify", "poll250ms"} {
		b.Run(mode, func(b *testing.B) {
			cfg := benchVolume(b, 0, 100)
			cfg.PollInterval, cfg.DisableInotify = time.Hour, mode != "inotify"
			if cfg.DisableInotify {
				cfg.PollInterval = 250 * time.Millisecond
			}
			b.ResetTimer()
			l, err := MeasureLatency(context.Background(), cfg, "lat.log", max(b.N, 100), 100, 5*time.Millisecond)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			if l.Delivered != l.Lines {
				b.Fatalf("%d of %d lines delivered", l.Delivered, l.Lines)
			}
			b.ReportMetric(float64(l.P50.Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(l.P99.Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(l.Max.Microseconds())/1000, "max-ms")
		})
	}
}

// BenchmarkRSS100Files: resident memory of a collector following 100
// active files. The collector runs in its own process (the test binary
// re-executed as TestHelperCollector, file sink, inotify + 5 s poll); 100
// writers append 50 lines/s each for 3 s; VmRSS is read from
// /proc/<pid>/status at the end (peak as VmHWM). The figure includes the
// Go runtime and the test binary's own text.
func BenchmarkRSS100Files(b *testing.B) {
	tmp := b.TempDir()
	root := filepath.Join(tmp, "root")
	dir := HostDir(root, "app", "/logs")
	os.MkdirAll(dir, 0o755)
	cfg := Config{Root: root, Watches: []Watch{{Container: "app", Dir: "/logs", Pattern: "*.log"}},
		FileSink: &FileSinkConfig{Path: filepath.Join(tmp, "out.jsonl")}, CheckpointPath: filepath.Join(tmp, "cp.json")}
	cmd := startHelper(b, cfg)
	defer func() { cmd.Process.Signal(syscall.SIGKILL); cmd.Wait() }()
	var files []*os.File
	for i := 0; i < 100; i++ {
		f, _ := os.Create(filepath.Join(dir, fmt.Sprintf("f%03d.log", i)))
		files = append(files, f)
	}
	for tick := 0; tick < 150; tick++ {
		for i, f := range files {
			f.WriteString(fmt.Sprintf("file %d tick %d %s\n", i, tick, strings.Repeat("y", 80)))
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	kb := func(key string) float64 {
		for _, l := range strings.Split(string(st), "\n") {
			if strings.HasPrefix(l, key+":") {
				v, _ := strconv.ParseFloat(strings.Fields(l)[1], 64)
				return v / 1024
			}
		}
		return 0
	}
	for range b.N {
	}
	b.ReportMetric(kb("VmRSS"), "rss-MiB")
	b.ReportMetric(kb("VmHWM"), "peak-rss-MiB")
	for _, f := range files {
		f.Close()
	}
}
