//go:build linux

package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cci-shim/cci-shim/logfwd"
)

// logScenario is a rotation style: after every rotateEvery lines, rotate
// replaces the file being written (cur, in dir) and returns the next.
type logScenario struct {
	name   string
	rotate func(dir string, n int, cur *os.File) (*os.File, error)
	// killNote explains the loss a kill run may show.
	killNote string
}

const (
	rotateEvery   = 1000
	linesPerTick  = 40 // every 10 ms: 4000 lines a second
	shortLifetime = 500 * time.Millisecond
)

func openLog(dir, name string) (*os.File, error) {
	return os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
}

var logScenarios = []logScenario{
	{name: "rename-create", // app.log -> app.N.log (still matched), new app.log
		rotate: func(dir string, n int, cur *os.File) (*os.File, error) {
			cur.Close()
			if err := os.Rename(filepath.Join(dir, "app.log"), filepath.Join(dir, fmt.Sprintf("app.%d.log", n))); err != nil {
				return nil, err
			}
			return openLog(dir, "app.log")
		}},
	{name: "rename-away", // app.log -> app.log.N (out of the glob), new app.log
		rotate: func(dir string, n int, cur *os.File) (*os.File, error) {
			cur.Close()
			if err := os.Rename(filepath.Join(dir, "app.log"), filepath.Join(dir, fmt.Sprintf("app.log.%d", n))); err != nil {
				return nil, err
			}
			return openLog(dir, "app.log")
		},
		killNote: "lines written while the collector was down to a file renamed out of the glob before it came back cannot be found by it"},
	{name: "copytruncate", // copy app.log to app.N.log (still matched), truncate app.log
		rotate: func(dir string, n int, cur *os.File) (*os.File, error) {
			src, err := os.Open(filepath.Join(dir, "app.log"))
			if err != nil {
				return nil, err
			}
			dst, err := os.Create(filepath.Join(dir, fmt.Sprintf("app.%d.log", n)))
			if err == nil {
				_, err = io.Copy(dst, src)
				dst.Close()
			}
			src.Close()
			if err != nil {
				return nil, err
			}
			return cur, cur.Truncate(0)
		}},
	{name: "short-lived", // a new file every 1000 lines, deleted 500 ms after its last line
		rotate: func(dir string, n int, cur *os.File) (*os.File, error) {
			name := cur.Name()
			cur.Close()
			time.AfterFunc(shortLifetime, func() { os.Remove(name) })
			return openLog(dir, fmt.Sprintf("short-%d.log", n))
		},
		killNote: "a file created and deleted while the collector was down never existed for it"},
}

// runScenario writes o.Lines numbered lines in scenario sc's style while a
// collector follows them, SIGKILLing the collector process kills times,
// and counts what reached the sink.
func runScenario(ctx context.Context, dir string, sc logScenario, kills int, o LogsOptions) (*LogsScenario, error) {
	cfg, logDir, err := logConfig(dir)
	if err != nil {
		return nil, err
	}
	res := &LogsScenario{Name: sc.name, Written: o.Lines}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	writeDone := make(chan error, 1)
	first := "app.log"
	if sc.name == "short-lived" {
		first = "short-0.log"
	}
	write := func() { go func() { writeDone <- writeScenario(wctx, logDir, first, sc, o.Lines) }() }

	var werr error
	if kills == 0 || o.Self == "" {
		// The writer starts once the collector follows the first file.
		// Lines renamed out of the glob before the collector first looks
		// were never visible to it, and a busy machine can delay that look
		// past two rotations.
		f, err := openLog(logDir, first)
		if err != nil {
			return nil, err
		}
		f.Close()
		c, err := logfwd.New(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			return nil, err
		}
		rctx, stop := context.WithCancel(ctx)
		go c.Run(rctx)
		if err := following(ctx, c); err != nil {
			stop()
			c.Close()
			return nil, err
		}
		write()
		werr = <-writeDone
		time.Sleep(200 * time.Millisecond)
		err = c.Drain(ctx)
		stop()
		c.Close()
		if err != nil {
			return nil, fmt.Errorf("drain: %w", err)
		}
	} else {
		raw, err := json.Marshal(cfg)
		if err != nil {
			return nil, err
		}
		cmd, err := startCollector(ctx, o.Self, raw)
		if err != nil {
			return nil, err
		}
		write()
		writing := true
		for writing && res.Kills < kills {
			select {
			case werr = <-writeDone:
				writing = false
				continue
			case <-time.After(time.Duration(200+rand.IntN(400)) * time.Millisecond):
			case <-ctx.Done():
				cmd.Process.Kill()
				cmd.Wait()
				return nil, ctx.Err()
			}
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
			res.Kills++
			if cmd, err = startCollector(ctx, o.Self, raw); err != nil {
				return nil, err
			}
		}
		if writing {
			werr = <-writeDone
		}
		time.Sleep(200 * time.Millisecond)
		cmd.Process.Signal(syscall.SIGTERM) // drains, then exits
		if err := cmd.Wait(); err != nil {
			return nil, fmt.Errorf("collector process: %w", err)
		}
	}
	if werr != nil {
		return nil, fmt.Errorf("writer: %w", werr)
	}
	counts, err := countSink(cfg.FileSink.Path, o.Lines)
	if err != nil {
		return nil, err
	}
	for _, n := range counts {
		res.Delivered += n
		if n == 0 {
			res.Lost++
		} else {
			res.Duplicated += n - 1
		}
	}
	if res.Lost > 0 && kills > 0 {
		res.Note = sc.killNote
	}
	var where []string
	if res.Lost > 0 {
		where = append(where, "lost lines "+lineRuns(counts, func(n int) bool { return n == 0 }, 5))
	}
	if res.Duplicated > 0 {
		where = append(where, "duplicated lines "+lineRuns(counts, func(n int) bool { return n > 1 }, 5))
	}
	res.Where = strings.Join(where, "; ")
	return res, nil
}

// following waits until c follows a file (its first cycle found it).
func following(ctx context.Context, c *logfwd.Collector) error {
	deadline := time.Now().Add(10 * time.Second)
	for c.Stats().Files == 0 {
		if time.Now().After(deadline) {
			return errors.New("logs: the collector found no log file within 10 s")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

func writeScenario(ctx context.Context, dir, first string, sc logScenario, lines int) error {
	f, err := openLog(dir, first)
	if err != nil {
		return err
	}
	defer func() { f.Close() }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var b []byte
	for i := 0; i < lines; {
		b = b[:0]
		for j := 0; j < linesPerTick && i < lines; j++ {
			b = fmt.Appendf(b, "sc %d %s\n", i, strings.Repeat("y", 60))
			i++
			if i%rotateEvery == 0 {
				if _, err := f.Write(b); err != nil {
					return err
				}
				b = b[:0]
				if f, err = sc.rotate(dir, i/rotateEvery, f); err != nil {
					return fmt.Errorf("rotation %d: %w", i/rotateEvery, err)
				}
			}
		}
		if _, err := f.Write(b); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// countSink counts how often each of the n lines reached the sink.
func countSink(path string, n int) ([]int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the sink: %w", err)
	}
	counts := make([]int, n)
	for _, l := range strings.Split(string(data), "\n") {
		if l == "" {
			continue
		}
		var rec struct {
			Log string `json:"log"`
		}
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			return nil, fmt.Errorf("sink line %q: %w", l, err)
		}
		f := strings.Fields(rec.Log)
		if len(f) != 3 || f[0] != "sc" {
			return nil, fmt.Errorf("sink line %q: not a scenario line", rec.Log)
		}
		seq, err := strconv.Atoi(f[1])
		if err != nil || seq < 0 || seq >= n {
			return nil, fmt.Errorf("sink line %q: bad sequence number", rec.Log)
		}
		counts[seq]++
	}
	return counts, nil
}

// collectorEnv carries the collector process's logfwd.Config (JSON).
const collectorEnv = "CCIBENCH_COLLECTOR_CONFIG"

// CollectorCommand is the hidden ccibench command the logs bench runs as
// its collector process.
const CollectorCommand = "__collector"

func startCollector(ctx context.Context, self string, cfg []byte) (*exec.Cmd, error) {
	cmd := exec.CommandContext(ctx, self, CollectorCommand)
	cmd.Env = append(os.Environ(), collectorEnv+"="+string(cfg))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the collector process: %w", err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if !strings.HasPrefix(line, "READY") {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("the collector process did not start: %q", line)
	}
	return cmd, nil
}

// RunCollector is the collector process: it follows the files of the
// logfwd.Config in its environment until SIGTERM, then drains and exits.
func RunCollector(stdout, stderr io.Writer) int {
	var cfg logfwd.Config
	if err := json.Unmarshal([]byte(os.Getenv(collectorEnv)), &cfg); err != nil {
		fmt.Fprintf(stderr, "ccibench %s: %s: %v (this command is for ccibench logs only)\n", CollectorCommand, collectorEnv, err)
		return 2
	}
	c, err := logfwd.New(cfg, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		fmt.Fprintf(stderr, "ccibench %s: %v\n", CollectorCommand, err)
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	drained := make(chan error, 1)
	go func() {
		<-sig
		drained <- c.Drain(context.Background())
		cancel()
	}()
	fmt.Fprintln(stdout, "READY")
	if err := c.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "ccibench %s: %v\n", CollectorCommand, err)
		return 1
	}
	if err := <-drained; err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "ccibench %s: drain: %v\n", CollectorCommand, err)
		return 1
	}
	return 0
}
