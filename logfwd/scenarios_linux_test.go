package logfwd

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestShortLivedFiles: files that live 100 ms are collected completely
// through inotify alone (the poll interval is an hour here).
func TestShortLivedFiles(t *testing.T) {
	e := newEnv(t, "*.log", nil)
	e.start()
	var want []string
	done := make(chan struct{})
	const n = 20
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("short-%d.log", i)
		lines := seq(name, 1, 50)
		want = append(want, lines...)
		go func() {
			defer func() { done <- struct{}{} }()
			f, err := os.Create(filepath.Join(e.dir, name))
			if err != nil {
				t.Error(err)
				return
			}
			for j, l := range lines {
				f.WriteString(l + "\n")
				if j%10 == 0 {
					time.Sleep(10 * time.Millisecond)
				}
			}
			f.Close()
			time.Sleep(50 * time.Millisecond)
			os.Remove(f.Name()) // lived about 100 ms
		}()
	}
	for i := 0; i < n; i++ {
		<-done
	}
	got := e.waitLines(len(want), 10*time.Second)
	if err := sameMultiset(got, want); err != nil {
		t.Fatal(err)
	}
	if !waitFor(5*time.Second, func() bool { return e.c.Stats().Files == 0 }) {
		t.Errorf("deleted files still held: %d", e.c.Stats().Files)
	}
}

// TestThousandFiles: 1000 files in one directory, found by inotify and by
// the poll.
func TestThousandFiles(t *testing.T) {
	for _, mode := range []string{"inotify", "poll"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, "*.log", func(c *Config) {
				if mode == "poll" {
					c.DisableInotify, c.PollInterval = true, 200*time.Millisecond
				}
			})
			e.start()
			var want []string
			for i := 0; i < 1000; i++ {
				name := fmt.Sprintf("f%04d.log", i)
				l := seq(name, 1, 5)
				want = append(want, l...)
				e.write(name, l...)
			}
			got := e.waitLines(len(want), 20*time.Second)
			if err := sameMultiset(got, want); err != nil {
				t.Fatal(err)
			}
			if s := e.c.Stats(); s.Files != 1000 || s.FilesTotal != 1000 {
				t.Errorf("stats files=%d total=%d, want 1000", s.Files, s.FilesTotal)
			}
		})
	}
}

// TestLongLines: lines of exactly 250 KiB and 250 KiB + 1 (R19).
func TestLongLines(t *testing.T) {
	const max = DefaultMaxLineBytes
	line := func(n int, c byte) string { return strings.Repeat(string(c), n) }
	cases := []struct {
		name      string
		mode      LongLineMode
		lines     []string
		want      []string // record lines
		wantParts []int    // PartIndex+1 for partial records, 0 for whole
		split     uint64
		dropped   uint64
	}{
		{"exactly the limit", LongLinesSplit, []string{line(max, 'a')}, []string{line(max, 'a')}, []int{0}, 0, 0},
		{"limit plus one, split", LongLinesSplit, []string{line(max+1, 'b'), "after"},
			[]string{line(max, 'b'), "b", "after"}, []int{1, 2, 0}, 1, 0},
		{"three parts, split", LongLinesSplit, []string{line(2*max+7, 'c')},
			[]string{line(max, 'c'), line(max, 'c'), line(7, 'c')}, []int{1, 2, 3}, 1, 0},
		{"limit plus one, drop", LongLinesDrop, []string{"before", line(max+1, 'd'), "after"},
			[]string{"before", "after"}, []int{0, 0}, 0, 1},
		{"exactly the limit, drop mode keeps it", LongLinesDrop, []string{line(max, 'e')},
			[]string{line(max, 'e')}, []int{0}, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, "*.log", func(c *Config) { c.LongLines = tc.mode })
			e.start()
			e.write("long.log", tc.lines...)
			e.waitLines(len(tc.want), 10*time.Second)
			recs := e.sink.snapshot()
			if len(recs) != len(tc.want) {
				t.Fatalf("got %d records, want %d", len(recs), len(tc.want))
			}
			for i, r := range recs {
				part := 0
				if r.Partial {
					part = r.PartIndex + 1
				}
				if r.Line != tc.want[i] || part != tc.wantParts[i] {
					t.Errorf("record %d: len %d part %d, want len %d part %d", i, len(r.Line), part, len(tc.want[i]), tc.wantParts[i])
				}
				if r.Partial && r.PartLast != (i+1 == len(recs) || !recs[i+1].Partial || recs[i+1].PartIndex == 0) {
					t.Errorf("record %d: PartLast=%v", i, r.PartLast)
				}
			}
			if s := e.c.Stats(); s.SplitLines != tc.split || s.DroppedLines != tc.dropped {
				t.Errorf("split=%d dropped=%d, want %d %d", s.SplitLines, s.DroppedLines, tc.split, tc.dropped)
			}
		})
	}
}

// TestPartialLastLine: a last line without newline waits for it; after the
// flush timeout it is forwarded as a partial part.
func TestPartialLastLine(t *testing.T) {
	t.Run("waits for the newline", func(t *testing.T) {
		e := newEnv(t, "*.log", func(c *Config) { c.FlushTimeout = time.Hour })
		e.start()
		os.WriteFile(filepath.Join(e.dir, "p.log"), []byte("first\nsec"), 0o644)
		e.waitLines(1, 5*time.Second)
		time.Sleep(300 * time.Millisecond)
		f, _ := os.OpenFile(filepath.Join(e.dir, "p.log"), os.O_WRONLY|os.O_APPEND, 0)
		f.WriteString("ond\n")
		f.Close()
		got := e.waitLines(2, 5*time.Second)
		if err := sameMultiset(got, []string{"first", "second"}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("flushed after the timeout", func(t *testing.T) {
		e := newEnv(t, "*.log", func(c *Config) { c.FlushTimeout = 200 * time.Millisecond })
		e.start()
		os.WriteFile(filepath.Join(e.dir, "p.log"), []byte("first\nsec"), 0o644)
		e.waitLines(2, 5*time.Second)
		f, _ := os.OpenFile(filepath.Join(e.dir, "p.log"), os.O_WRONLY|os.O_APPEND, 0)
		f.WriteString("ond\n")
		f.Close()
		e.waitLines(3, 5*time.Second)
		recs := e.sink.snapshot()
		if len(recs) != 3 || recs[1].Line != "sec" || !recs[1].Partial || recs[1].PartLast ||
			recs[2].Line != "ond" || !recs[2].Partial || !recs[2].PartLast || recs[2].PartIndex != 1 {
			t.Fatalf("records %+v", recs)
		}
		if s := e.c.Stats(); s.FlushedPartial != 1 {
			t.Errorf("FlushedPartial=%d", s.FlushedPartial)
		}
	})
}

// TestSameNameTwoDirectories: both files are collected, each tagged with
// its full container path.
func TestSameNameTwoDirectories(t *testing.T) {
	e := newEnv(t, "*.log", func(c *Config) {
		c.Watches = []Watch{
			{Container: "app", Dir: "/var/log/a", Pattern: "*.log"},
			{Container: "app", Dir: "/var/log/b", Pattern: "*.log"},
		}
	})
	for _, d := range []string{"/var/log/a", "/var/log/b"} {
		hd := HostDir(e.root, "app", d)
		os.MkdirAll(hd, 0o755)
		os.WriteFile(filepath.Join(hd, "app.log"), []byte("same line\n"), 0o644)
	}
	e.start()
	e.waitLines(2, 5*time.Second)
	paths := map[string]int{}
	for _, r := range e.sink.snapshot() {
		paths[r.Path]++
	}
	if len(paths) != 2 || paths["/var/log/a/app.log"] != 1 || paths["/var/log/b/app.log"] != 1 {
		t.Fatalf("paths %v", paths)
	}
}

// TestDrainAndFileSink: Drain delivers everything including a last line
// without newline; the file sink holds JSON lines with the pod identity.
func TestDrainAndFileSink(t *testing.T) {
	tmp := t.TempDir()
	root := filepath.Join(tmp, "root")
	dir := HostDir(root, "web", "/logs")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "x.log"), []byte("one\ntwo \"quoted\"\nno newline"), 0o644)
	cfg := Config{
		Root: root, Watches: []Watch{{Container: "web", Dir: "/logs", Pattern: "*.log"}},
		Pod:      PodIdentity{Namespace: "ns1", Name: "p1", UID: "u1"},
		FileSink: &FileSinkConfig{Path: filepath.Join(tmp, "out.jsonl")}, CheckpointPath: filepath.Join(tmp, "cp.json"),
	}
	c, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.Run(context.Background()); err != nil { // returns at once after Drain
		t.Fatal(err)
	}
	f, _ := os.Open(cfg.FileSink.Path)
	defer f.Close()
	var got []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("bad JSON line %q: %v", sc.Text(), err)
		}
		if m["namespace"] != "ns1" || m["pod"] != "p1" || m["pod_uid"] != "u1" || m["container"] != "web" || m["path"] != "/logs/x.log" {
			t.Errorf("record %v", m)
		}
		if _, err := time.Parse(time.RFC3339Nano, m["time"].(string)); err != nil {
			t.Errorf("time: %v", err)
		}
		got = append(got, m["log"].(string))
	}
	if err := sameMultiset(got, []string{"one", `two "quoted"`, "no newline"}); err != nil {
		t.Fatal(err)
	}
}

// TestUpdateWatches: a policy change applies to a running collector.
func TestUpdateWatches(t *testing.T) {
	e := newEnv(t, "*.log", nil)
	e.start()
	e.write("a.log", "a1")
	e.write("b.txt", "b1")
	e.waitLines(1, 5*time.Second)
	err := e.c.UpdateWatches(context.Background(), []Watch{{Container: "app", Dir: "/var/log/app", Pattern: "*.txt"}})
	if err != nil {
		t.Fatal(err)
	}
	e.write("b.txt", "b2")
	got := e.waitLines(3, 5*time.Second)
	if err := sameMultiset(got, []string{"a1", "b1", "b2"}); err != nil {
		t.Fatal(err)
	}
	if err := e.c.UpdateWatches(context.Background(), []Watch{{Container: "app", Dir: "/proc", Pattern: "*"}}); err == nil {
		t.Error("UpdateWatches accepted /proc")
	}
}

// TestSinkDownStopsReading: while the sink refuses records the collector
// keeps at most one batch and commits nothing; nothing is lost after.
func TestSinkDownStopsReading(t *testing.T) {
	e := newEnv(t, "*.log", func(c *Config) { c.MaxBatchBytes = 16 << 10 })
	e.sink.mu.Lock()
	e.sink.fail = true
	e.sink.mu.Unlock()
	e.start()
	want := seq("down", 1, 5000)
	e.write("a.log", want...)
	time.Sleep(500 * time.Millisecond)
	if s := e.c.Stats(); s.SinkErrors == 0 || s.Lines != 0 {
		t.Fatalf("sink errors %d lines %d", s.SinkErrors, s.Lines)
	}
	e.sink.mu.Lock()
	e.sink.fail = false
	e.sink.mu.Unlock()
	got := e.waitLines(len(want), 15*time.Second)
	if err := sameMultiset(got, want); err != nil {
		t.Fatal(err)
	}
	if e.sink.batches < 5000*12/(16<<10) {
		t.Errorf("only %d batches: batches are not bounded", e.sink.batches)
	}
}
