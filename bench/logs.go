//go:build linux

package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/cci-shim/cci-shim/logfwd"
)

// LogsOptions configures the logs bench, which drives logfwd's public API
// (the collector the shim runs per pod) on host directories: no containerd.
type LogsOptions struct {
	// MB is the size of the throughput file (100-byte lines). Default 200.
	MB int
	// LatencyLines is how many lines the latency runs write, at
	// LatencyRate lines a second. Defaults 1000 and 100.
	LatencyLines int
	LatencyRate  int
	// Lines is how many lines each rotation scenario writes; Kills how
	// many times the collector process is SIGKILLed during a scenario's
	// kill run. Defaults 20000 and 10.
	Lines int
	Kills int
	// Self is the executable that runs the collector process (ccibench's
	// hidden collector command); "" skips the kill runs.
	Self string
}

func (o LogsOptions) withDefaults() LogsOptions {
	if o.MB <= 0 {
		o.MB = 200
	}
	if o.LatencyLines <= 0 {
		o.LatencyLines = 1000
	}
	if o.LatencyRate <= 0 {
		o.LatencyRate = 100
	}
	if o.Lines <= 0 {
		o.Lines = 20000
	}
	if o.Kills < 0 {
		o.Kills = 0
	} else if o.Kills == 0 {
		o.Kills = 10
	}
	return o
}

// LogsThroughput is one collector draining a file to the file sink.
type LogsThroughput struct {
	Bytes int64 `json:"bytes"`
	Lines int64 `json:"lines"`
	// Wall and CPU are the drain's wall time and the process's user+system
	// CPU time during it; PerCore is Bytes/CPU (bytes per CPU second).
	Wall       float64 `json:"wallSeconds"`
	CPU        float64 `json:"cpuSeconds"`
	PerCoreBps float64 `json:"perCoreBps"`
	WallBps    float64 `json:"wallBps"`
}

// LogsLatency is write→sink latency of one discovery mode.
type LogsLatency struct {
	Mode         string    `json:"mode"` // "inotify" or "poll only"
	PollInterval float64   `json:"pollIntervalSeconds"`
	Seconds      []float64 `json:"seconds"` // per line, in write order
	P50          float64   `json:"p50"`
	P99          float64   `json:"p99"`
	Max          float64   `json:"max"`
	Missing      int       `json:"missing"`
}

// LogsScenario is one rotation style, with or without SIGKILLs of the
// collector process.
type LogsScenario struct {
	Name       string `json:"name"`
	Kills      int    `json:"kills"`
	Written    int    `json:"written"`
	Delivered  int    `json:"delivered"`
	Lost       int    `json:"lost"`
	Duplicated int    `json:"duplicated"`
	// Note explains a loss the scenario makes unavoidable.
	Note string `json:"note,omitempty"`
	// Where gives the line numbers (0-based, as written) of the first lost
	// and duplicated runs, to place them against the rotations (one every
	// 1000 lines).
	Where string `json:"where,omitempty"`
}

// lineRuns returns up to max runs of consecutive line numbers i with
// pick(counts[i]), as "a-b" or "a", comma-separated, and "..." when there
// are more.
func lineRuns(counts []int, pick func(n int) bool, max int) string {
	var runs []string
	for i := 0; i < len(counts); i++ {
		if !pick(counts[i]) {
			continue
		}
		j := i
		for j+1 < len(counts) && pick(counts[j+1]) {
			j++
		}
		if len(runs) == max {
			runs = append(runs, "...")
			break
		}
		if j > i {
			runs = append(runs, fmt.Sprintf("%d-%d", i, j))
		} else {
			runs = append(runs, fmt.Sprint(i))
		}
		i = j
	}
	return strings.Join(runs, ", ")
}

// LogsResult is the logs bench's result.
type LogsResult struct {
	Throughput *LogsThroughput `json:"throughput"`
	Latency    []LogsLatency   `json:"latency"`
	Scenarios  []LogsScenario  `json:"scenarios"`
}

// RunLogs runs the logs bench in a temp dir it removes. say gets progress
// lines.
func RunLogs(ctx context.Context, o LogsOptions, say func(string)) (*LogsResult, error) {
	o = o.withDefaults()
	dir, err := os.MkdirTemp("", "ccibench-logs-")
	if err != nil {
		return nil, fmt.Errorf("logs: %w", err)
	}
	defer os.RemoveAll(dir)
	prog := &progressLine{say: say, name: "logs"}
	res := &LogsResult{}
	prog.done("throughput: draining %d MB of 100-byte lines to the file sink", o.MB)
	if res.Throughput, err = logsThroughput(ctx, filepath.Join(dir, "tp"), o.MB); err != nil {
		return res, err
	}
	prog.done("throughput: %.0f MB/s per CPU second (%.0f MB/s wall)", res.Throughput.PerCoreBps/1e6, res.Throughput.WallBps/1e6)
	for _, inotify := range []bool{true, false} {
		mode := map[bool]string{true: "inotify", false: "poll only"}[inotify]
		prog.done("latency (%s): %d lines at %d/s", mode, o.LatencyLines, o.LatencyRate)
		l, err := logsLatency(ctx, filepath.Join(dir, "lat-"+strings.ReplaceAll(mode, " ", "-")), inotify, o, prog)
		if err != nil {
			return res, err
		}
		prog.done("latency (%s): p50 %.1f ms, p99 %.1f ms, %d missing", mode, l.P50*1e3, l.P99*1e3, l.Missing)
		res.Latency = append(res.Latency, *l)
	}
	runs := []int{0} // SIGKILLs per run of a scenario
	if o.Kills > 0 && o.Self != "" {
		runs = append(runs, o.Kills)
	}
	for _, sc := range logScenarios {
		for _, kills := range runs {
			prog.done("rotation %s, %d SIGKILLs: %d lines", sc.name, kills, o.Lines)
			r, err := runScenario(ctx, filepath.Join(dir, fmt.Sprintf("sc-%s-%d", sc.name, kills)), sc, kills, o)
			if err != nil {
				return res, fmt.Errorf("logs: %s: %w", sc.name, err)
			}
			prog.done("rotation %s, %d SIGKILLs: %d written, %d lost, %d duplicated", sc.name, r.Kills, r.Written, r.Lost, r.Duplicated)
			res.Scenarios = append(res.Scenarios, *r)
		}
	}
	return res, nil
}

// logConfig is a one-watch collector config under dir: container "app",
// directory /logs, pattern *.log, file sink dir/sink.jsonl.
func logConfig(dir string) (logfwd.Config, string, error) {
	root := filepath.Join(dir, "root")
	logDir := logfwd.HostDir(root, "app", "/logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return logfwd.Config{}, "", fmt.Errorf("logs: %w", err)
	}
	return logfwd.Config{
		Root:           root,
		Watches:        []logfwd.Watch{{Container: "app", Dir: "/logs", Pattern: "*.log"}},
		Pod:            logfwd.PodIdentity{Namespace: "ccibench", Name: "logs", UID: "ccibench-logs"},
		FileSink:       &logfwd.FileSinkConfig{Path: filepath.Join(dir, "sink.jsonl")},
		CheckpointPath: filepath.Join(dir, "checkpoint.json"),
	}, logDir, nil
}

func logsThroughput(ctx context.Context, dir string, mb int) (*LogsThroughput, error) {
	cfg, logDir, err := logConfig(dir)
	if err != nil {
		return nil, err
	}
	line := strings.Repeat("x", 99) + "\n"
	n := int64(mb) * 1_000_000 / int64(len(line))
	f, err := os.Create(filepath.Join(logDir, "a.log"))
	if err != nil {
		return nil, fmt.Errorf("logs: %w", err)
	}
	chunk := []byte(strings.Repeat(line, 10_000))
	for left := n; left > 0; left -= 10_000 {
		if _, err := f.Write(chunk[:min(left, 10_000)*int64(len(line))]); err != nil {
			f.Close()
			return nil, fmt.Errorf("logs: writing the throughput file: %w", err)
		}
	}
	f.Close()
	c, err := logfwd.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, fmt.Errorf("logs: %w", err)
	}
	defer c.Close()
	cpu0, t0 := selfCPU(), time.Now()
	if err := c.Drain(ctx); err != nil {
		return nil, fmt.Errorf("logs: drain: %w", err)
	}
	r := &LogsThroughput{Bytes: n * int64(len(line)), Lines: int64(c.Stats().Lines), Wall: time.Since(t0).Seconds(), CPU: selfCPU() - cpu0}
	if r.Lines != n {
		return r, fmt.Errorf("logs: throughput: %d lines delivered, want %d", r.Lines, n)
	}
	r.PerCoreBps, r.WallBps = float64(r.Bytes)/r.CPU, float64(r.Bytes)/r.Wall
	return r, nil
}

// selfCPU is this process's user+system CPU time in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// logsLatency writes o.LatencyLines lines, each carrying its write time,
// at o.LatencyRate a second, starting a new file every second (discovery
// is part of the latency), and times each line's arrival in the sink.
func logsLatency(ctx context.Context, dir string, inotify bool, o LogsOptions, prog *progressLine) (*LogsLatency, error) {
	cfg, logDir, err := logConfig(dir)
	if err != nil {
		return nil, err
	}
	cfg.DisableInotify = !inotify
	res := &LogsLatency{Mode: map[bool]string{true: "inotify", false: "poll only"}[inotify], PollInterval: 5}
	c, err := logfwd.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, fmt.Errorf("logs: %w", err)
	}
	defer c.Close()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go c.Run(rctx)

	arrived := make([]float64, o.LatencyLines)
	for i := range arrived {
		arrived[i] = -1
	}
	tail, err := newSinkTail(cfg.FileSink.Path)
	if err != nil {
		return nil, err
	}
	defer tail.close()
	recv := func(log string, now time.Time) {
		seq, sent, ok := parseLatencyLine(log)
		if ok && seq < len(arrived) && arrived[seq] < 0 {
			arrived[seq] = now.Sub(time.Unix(0, sent)).Seconds()
		}
	}
	writeDone := make(chan error, 1)
	go func() { writeDone <- writeLatencyLines(rctx, logDir, o) }()
	deadline := time.Now().Add(time.Duration(o.LatencyLines/o.LatencyRate)*time.Second + 15*time.Second)
	got := 0
	for got < o.LatencyLines && time.Now().Before(deadline) && ctx.Err() == nil {
		tail.read(recv, 100*time.Millisecond)
		got = 0
		for _, a := range arrived {
			if a >= 0 {
				got++
			}
		}
		prog.update("latency (%s): %d/%d lines arrived", res.Mode, got, o.LatencyLines)
	}
	cancel()
	if err := <-writeDone; err != nil && !errors.Is(err, context.Canceled) {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, a := range arrived {
		if a < 0 {
			res.Missing++
			continue
		}
		res.Seconds = append(res.Seconds, a)
	}
	res.P50, res.P99, res.Max = Percentile(res.Seconds, 50), Percentile(res.Seconds, 99), Percentile(res.Seconds, 100)
	return res, nil
}

func writeLatencyLines(ctx context.Context, logDir string, o LogsOptions) error {
	every := time.Second / time.Duration(o.LatencyRate)
	tick := time.NewTicker(every)
	defer tick.Stop()
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	for i := 0; i < o.LatencyLines; i++ {
		if i%o.LatencyRate == 0 { // a new file every second
			if f != nil {
				f.Close()
			}
			var err error
			if f, err = os.Create(filepath.Join(logDir, fmt.Sprintf("lat-%d.log", i/o.LatencyRate))); err != nil {
				return fmt.Errorf("logs: %w", err)
			}
		}
		if _, err := fmt.Fprintf(f, "lat %d %d\n", i, time.Now().UnixNano()); err != nil {
			return fmt.Errorf("logs: %w", err)
		}
		if i == o.LatencyLines-1 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

func parseLatencyLine(s string) (seq int, sent int64, ok bool) {
	f := strings.Fields(s)
	if len(f) != 3 || f[0] != "lat" {
		return 0, 0, false
	}
	seq, err1 := strconv.Atoi(f[1])
	sent, err2 := strconv.ParseInt(f[2], 10, 64)
	return seq, sent, err1 == nil && err2 == nil
}

// sinkTail follows the file sink: an inotify watch on its directory, and
// reads of what was appended.
type sinkTail struct {
	path string
	w    *fsnotify.Watcher
	f    *os.File
	buf  []byte
}

func newSinkTail(path string) (*sinkTail, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("logs: %w", err)
	}
	if err := w.Add(filepath.Dir(path)); err != nil {
		w.Close()
		return nil, fmt.Errorf("logs: %w", err)
	}
	return &sinkTail{path: path, w: w}, nil
}

// read waits up to d for the sink to change and hands every new complete
// record's "log" field to fn with the time it was read.
func (t *sinkTail) read(fn func(log string, now time.Time), d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-t.w.Events:
		for more := true; more; { // take what else is queued: one read serves all
			select {
			case <-t.w.Events:
			case <-t.w.Errors:
			default:
				more = false
			}
		}
	case <-t.w.Errors:
	case <-timer.C:
	}
	if t.f == nil {
		f, err := os.Open(t.path)
		if err != nil {
			return
		}
		t.f = f
	}
	now := time.Now()
	chunk := make([]byte, 64<<10)
	for {
		n, err := t.f.Read(chunk)
		t.buf = append(t.buf, chunk[:n]...)
		if n == 0 || err == io.EOF || err != nil {
			break
		}
	}
	for {
		i := bytes.IndexByte(t.buf, '\n')
		if i < 0 {
			return
		}
		var rec struct {
			Log string `json:"log"`
		}
		if json.Unmarshal(t.buf[:i], &rec) == nil {
			fn(rec.Log, now)
		}
		t.buf = t.buf[i+1:]
	}
}

func (t *sinkTail) close() {
	t.w.Close()
	if t.f != nil {
		t.f.Close()
	}
}
