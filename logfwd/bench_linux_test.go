package logfwd

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
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

// BenchmarkThroughput: lines/s and MB/s one collector (one goroutine, so
// one core) reads from a file into a sink: "discard" measures the reader,
// "file" includes JSON encoding, the file sink's write+fsync and the
// checkpoints (1 MiB batches).
func BenchmarkThroughput(b *testing.B) {
	line := strings.Repeat("x", 99) // 100 bytes with the newline
	for _, sinkKind := range []string{"discard", "file"} {
		b.Run(sinkKind, func(b *testing.B) {
			tmp := b.TempDir()
			root := filepath.Join(tmp, "root")
			dir := HostDir(root, "app", "/logs")
			os.MkdirAll(dir, 0o755)
			f, _ := os.Create(filepath.Join(dir, "a.log"))
			w := bufio.NewWriterSize(f, 1<<20)
			for i := 0; i < b.N; i++ {
				w.WriteString(line + "\n")
			}
			w.Flush()
			f.Close()
			cfg := Config{Root: root, Watches: []Watch{{Container: "app", Dir: "/logs", Pattern: "*.log"}},
				FileSink: &FileSinkConfig{Path: filepath.Join(tmp, "out.jsonl")}, CheckpointPath: filepath.Join(tmp, "cp.json")}
			var sinks map[string]Sink
			cs := &countSink{}
			if sinkKind == "discard" {
				sinks = map[string]Sink{DestinationFile: cs}
			}
			c, err := newCollector(cfg, slog.New(slog.DiscardHandler), sinks)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(100)
			b.ResetTimer()
			start := time.Now()
			if err := c.Drain(context.Background()); err != nil {
				b.Fatal(err)
			}
			el := time.Since(start).Seconds()
			b.StopTimer()
			if got := c.Stats().Lines; got != uint64(b.N) {
				b.Fatalf("delivered %d lines, want %d", got, b.N)
			}
			b.ReportMetric(float64(b.N)/el, "lines/s")
			b.ReportMetric(float64(b.N)*100/el/1e6, "MB/s")
		})
	}
}

// BenchmarkLatency: time from write(2) of a line to the sink's Send, with
// inotify and with the poll only (poll interval 250 ms). Reports p50/p99.
func BenchmarkLatency(b *testing.B) {
	for _, mode := range []string{"inotify", "poll250ms"} {
		b.Run(mode, func(b *testing.B) {
			tmp := b.TempDir()
			root := filepath.Join(tmp, "root")
			dir := HostDir(root, "app", "/logs")
			os.MkdirAll(dir, 0o755)
			cfg := Config{Root: root, Watches: []Watch{{Container: "app", Dir: "/logs", Pattern: "*.log"}},
				FileSink: &FileSinkConfig{Path: "unused"}, CheckpointPath: filepath.Join(tmp, "cp.json"),
				PollInterval: time.Hour, DisableInotify: mode != "inotify"}
			if mode != "inotify" {
				cfg.PollInterval = 250 * time.Millisecond
			}
			cs := &countSink{ch: make(chan struct{}, 1)}
			c, err := newCollector(cfg, slog.New(slog.DiscardHandler), map[string]Sink{DestinationFile: cs})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go c.Run(ctx)
			f, _ := os.Create(filepath.Join(dir, "a.log"))
			defer f.Close()
			time.Sleep(50 * time.Millisecond)
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				want := cs.lines.Load() + 1
				t0 := time.Now()
				f.WriteString("latency line " + strconv.Itoa(i) + "\n")
				for cs.lines.Load() < want {
					select {
					case <-cs.ch:
					case <-time.After(5 * time.Second):
						b.Fatal("line not delivered in 5s")
					}
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[(len(lat)*99)/100].Microseconds())/1000, "p99-ms")
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
