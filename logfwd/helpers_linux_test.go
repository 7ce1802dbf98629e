package logfwd

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// memSink records what it is sent; tests can make it fail.
type memSink struct {
	mu      sync.Mutex
	recs    []Record
	fail    bool
	batches int
}

func (s *memSink) Send(ctx context.Context, recs []Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return fmt.Errorf("sink down")
	}
	s.recs = append(s.recs, recs...)
	s.batches++
	return nil
}

func (s *memSink) Close() error { return nil }

func (s *memSink) snapshot() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Record(nil), s.recs...)
}

func (s *memSink) lines() []string {
	var out []string
	for _, r := range s.snapshot() {
		out = append(out, r.Line)
	}
	return out
}

// env is one pod with one watch /var/log/app/<pattern>.
type env struct {
	t    *testing.T
	root string
	dir  string // host directory of /var/log/app
	cfg  Config
	sink *memSink
	c    *Collector
	stop func()
}

func newEnv(t *testing.T, pattern string, mod func(*Config)) *env {
	t.Helper()
	tmp := t.TempDir()
	e := &env{t: t, root: filepath.Join(tmp, "root"), sink: &memSink{}}
	e.dir = HostDir(e.root, "app", "/var/log/app")
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	e.cfg = Config{
		Root:           e.root,
		Watches:        []Watch{{Container: "app", Dir: "/var/log/app", Pattern: pattern}},
		Pod:            PodIdentity{Namespace: "ns", Name: "pod", UID: "uid-1"},
		FileSink:       &FileSinkConfig{Path: filepath.Join(tmp, "sink.jsonl")},
		CheckpointPath: filepath.Join(tmp, "offsets.json"),
		PollInterval:   time.Hour, // inotify unless a test says otherwise
		FlushTimeout:   time.Hour,
		ReleaseAfter:   200 * time.Millisecond,
		CopyWait:       time.Second,
	}
	if mod != nil {
		mod(&e.cfg)
	}
	return e
}

func (e *env) start() {
	e.t.Helper()
	c, err := newCollector(e.cfg, slog.New(slog.DiscardHandler), map[string]Sink{DestinationFile: e.sink})
	if err != nil {
		e.t.Fatal(err)
	}
	e.c = c
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	e.stop = func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("Run: %v", err)
		}
		c.Close()
	}
	e.t.Cleanup(func() {
		if e.stop != nil {
			e.stop()
			e.stop = nil
		}
	})
	// Let the first full scan and the inotify watch settle.
	time.Sleep(50 * time.Millisecond)
}

func (e *env) halt() {
	if e.stop != nil {
		e.stop()
		e.stop = nil
	}
}

func (e *env) write(name string, lines ...string) {
	e.t.Helper()
	f, err := os.OpenFile(filepath.Join(e.dir, name), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	if _, err := f.WriteString(b.String()); err != nil {
		e.t.Fatal(err)
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}

// waitLines waits until the sink holds at least n records, then a little
// longer so that duplicates would show.
func (e *env) waitLines(n int, d time.Duration) []string {
	e.t.Helper()
	waitFor(d, func() bool { return len(e.sink.snapshot()) >= n })
	time.Sleep(100 * time.Millisecond)
	return e.sink.lines()
}

func seq(prefix string, from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("%s-%06d", prefix, i))
	}
	return out
}

// sameMultiset reports the first difference between got and want as
// multisets: missing and duplicated lines.
func sameMultiset(got, want []string) error {
	count := map[string]int{}
	for _, w := range want {
		count[w]++
	}
	for _, g := range got {
		count[g]--
	}
	var missing, extra []string
	for k, v := range count {
		switch {
		case v > 0:
			missing = append(missing, k)
		case v < 0:
			extra = append(extra, k)
		}
	}
	if len(missing)+len(extra) == 0 {
		return nil
	}
	sort.Strings(missing)
	sort.Strings(extra)
	trim := func(s []string) []string {
		if len(s) > 5 {
			return append(s[:5:5], "...")
		}
		return s
	}
	return fmt.Errorf("got %d lines, want %d: %d missing %q, %d duplicated/unexpected %q",
		len(got), len(want), len(missing), trim(missing), len(extra), trim(extra))
}

func concat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
