package logfwd

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSparseFileNotAmplified (issue 9 item 11): a 10 MiB sparse file with
// a line before and after its hole and a 1 TiB file that is all hole go to
// the real file sink. Only the two lines arrive, the sink
// stays tiny, the holes are counted, and the 1 TiB file costs no reading
// (it drains in seconds).
func TestSparseFileNotAmplified(t *testing.T) {
	e := newEnv(t, "*.log", nil)
	a := filepath.Join(e.dir, "a.log")
	if err := os.WriteFile(a, []byte("before\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(a, 10<<20); err != nil {
		t.Fatal(err)
	}
	e.write("a.log", "after")
	if err := os.WriteFile(filepath.Join(e.dir, "c.log"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(e.dir, "c.log"), 1<<40); err != nil {
		t.Fatalf("a 1 TiB sparse file: %v", err)
	}
	c, err := New(e.cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	if err := sameMultiset(sinkLines(t, e.cfg.FileSink.Path), []string{"before", "after"}); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(e.cfg.FileSink.Path)
	s := c.Stats()
	t.Logf("inputs of 1 TiB + 10 MiB apparent size: sink %d bytes, NulBytes %d, NulLines %d, drained in %v",
		st.Size(), s.NulBytes, s.NulLines, el)
	if st.Size() > 1024 {
		t.Errorf("sink holds %d bytes for two short lines", st.Size())
	}
	if want := uint64(1<<40 + 10<<20 - len("before\n")); s.NulBytes != want {
		t.Errorf("NulBytes %d, want %d (every hole byte counted)", s.NulBytes, want)
	}
	if el > 20*time.Second {
		t.Errorf("draining took %v: holes were read, not skipped", el)
	}
}

// TestNulBytesWritten: NUL bytes really written (not holes) are removed
// from records; lines of nothing but NULs are not forwarded; long lines are
// split by their length as written and parts left empty take no index.
func TestNulBytesWritten(t *testing.T) {
	e := newEnv(t, "*.log", nil)
	nul := func(n int) string { return strings.Repeat("\x00", n) }
	e.write("a.log",
		"a\x00b",
		nul(3),
		"",
		"plain",
		nul(300<<10)+"tail",                  // over the limit: first part empty
		"head"+nul(600<<10)+"end",            // over the buffer: middle part empty
		strings.Repeat("\x00x", 1000)+"\x00", // mostly NUL
	)
	for i := 0; i < 100; i++ { // 100 KiB of NUL-only lines
		e.write("a.log", nul(1023))
	}
	c, err := newCollector(e.cfg, slog.New(slog.DiscardHandler), map[string]Sink{DestinationFile: e.sink})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	type rec struct {
		line          string
		partial, last bool
		idx           int
	}
	want := []rec{
		{line: "ab"}, {line: ""}, {line: "plain"},
		{line: "tail", partial: true, last: true, idx: 0},
		{line: "head", partial: true, idx: 0}, {line: "end", partial: true, last: true, idx: 1},
		{line: strings.Repeat("x", 1000)},
	}
	got := e.sink.snapshot()
	if len(got) != len(want) {
		var lines []string
		for _, r := range got {
			lines = append(lines, r.Line)
		}
		t.Fatalf("got %d records %q, want %d", len(got), lines, len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Line != w.line || g.Partial != w.partial || g.Partial && (g.PartLast != w.last || g.PartIndex != w.idx) {
			t.Errorf("record %d: %q partial=%v idx=%d last=%v; want %+v", i, g.Line, g.Partial, g.PartIndex, g.PartLast, w)
		}
	}
	s := c.Stats()
	wantNul := uint64(1 + 3 + 300<<10 + 600<<10 + 1001 + 100*1023)
	if s.NulBytes != wantNul || s.NulLines != 101 {
		t.Errorf("NulBytes %d NulLines %d; want %d and 101", s.NulBytes, s.NulLines, wantNul)
	}
}
