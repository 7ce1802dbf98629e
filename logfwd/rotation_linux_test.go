package logfwd

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
}

// TestRotation covers every rotation style of R17 with real files, real
// inotify and real renames/truncations: no line lost, none repeated.
func TestRotation(t *testing.T) {
	type step func(e *env)
	waitN := func(n int) step {
		return func(e *env) { e.waitLines(n, 5*time.Second) }
	}
	p := func(n string) func(e *env) string { return func(e *env) string { return filepath.Join(e.dir, n) } }
	cases := []struct {
		name    string
		pattern string
		steps   []step
		want    []string
	}{
		{"rename and create, rotated name not matched", "*.log", []step{
			func(e *env) { e.write("test.log", seq("a", 1, 100)...) },
			waitN(100),
			func(e *env) {
				// The writer still holds the old descriptor for a while.
				f, _ := os.OpenFile(p("test.log")(e), os.O_WRONLY|os.O_APPEND, 0)
				os.Rename(p("test.log")(e), p("test.log.1")(e))
				for _, l := range seq("a", 101, 150) {
					f.WriteString(l + "\n")
				}
				f.Close()
				e.write("test.log", seq("b", 1, 100)...)
			},
		}, concat(seq("a", 1, 150), seq("b", 1, 100))},
		{"rename to a name that still matches the glob", "*.log", []step{
			func(e *env) { e.write("test.log", seq("a", 1, 100)...) },
			waitN(100),
			func(e *env) {
				os.Rename(p("test.log")(e), p("test.001.log")(e))
				e.write("test.001.log", seq("a", 101, 120)...)
				e.write("test.log", seq("b", 1, 100)...)
			},
		}, concat(seq("a", 1, 120), seq("b", 1, 100))},
		{"rename before anything was read", "*.log", []step{
			func(e *env) {
				e.write("test.log", seq("a", 1, 500)...)
				os.Rename(p("test.log")(e), p("test.001.log")(e))
				e.write("test.log", seq("b", 1, 100)...)
			},
		}, concat(seq("a", 1, 500), seq("b", 1, 100))},
		{"copytruncate, copy matches the glob", "*.log", []step{
			func(e *env) { e.write("test.log", seq("a", 1, 100)...) },
			waitN(100),
			func(e *env) {
				e.write("test.log", seq("a", 101, 130)...) // maybe unread at rotation
				copyFile(t, p("test.log")(e), p("test.001.log")(e))
				os.Truncate(p("test.log")(e), 0)
				e.write("test.log", seq("b", 1, 100)...)
			},
		}, concat(seq("a", 1, 130), seq("b", 1, 100))},
		{"copytruncate, copy seen before truncation", "*.log", []step{
			func(e *env) { e.write("test.log", seq("a", 1, 100)...) },
			waitN(100),
			func(e *env) {
				copyFile(t, p("test.log")(e), p("test.001.log")(e))
				time.Sleep(300 * time.Millisecond) // the copy is found and deferred
				os.Truncate(p("test.log")(e), 0)
				e.write("test.log", seq("b", 1, 50)...)
			},
		}, concat(seq("a", 1, 100), seq("b", 1, 50))},
		{"copytruncate, copy not matched", "*.log", []step{
			func(e *env) { e.write("test.log", seq("a", 1, 100)...) },
			waitN(100),
			func(e *env) {
				copyFile(t, p("test.log")(e), p("test.log.1")(e))
				os.Truncate(p("test.log")(e), 0)
				e.write("test.log", seq("b", 1, 100)...)
			},
		}, concat(seq("a", 1, 100), seq("b", 1, 100))},
		{"truncation in place, longer rewrite", "*.log", []step{
			func(e *env) { e.write("test.log", seq("a", 1, 10)...) },
			waitN(10),
			func(e *env) {
				os.Truncate(p("test.log")(e), 0)
				e.write("test.log", seq("b", 1, 300)...)
			},
		}, concat(seq("a", 1, 10), seq("b", 1, 300))},
		{"unlink then create under the same name", "*.log", []step{
			func(e *env) { e.write("test.log", seq("a", 1, 50)...) },
			waitN(50),
			func(e *env) {
				os.Remove(p("test.log")(e))
				e.write("test.log", seq("b", 1, 50)...)
			},
		}, concat(seq("a", 1, 50), seq("b", 1, 50))},
		{"deleted file is read to its end", "*.log", []step{
			func(e *env) {
				e.write("big.log", seq("a", 1, 20000)...)
				// Delete once the collector holds it, most likely before it
				// has read it all. (A file removed before it is ever opened
				// cannot be read by anyone.)
				waitFor(5*time.Second, func() bool { return e.c.Stats().FilesTotal > 0 })
				os.Remove(p("big.log")(e))
			},
		}, seq("a", 1, 20000)},
		{"independent files with the same first bytes", "*.log", []step{
			func(e *env) { e.write("one.log", "HEADER v1", "one-1") },
			waitN(2),
			func(e *env) { e.write("two.log", "HEADER v1", "one-1", "two-2") },
		}, []string{"HEADER v1", "one-1", "HEADER v1", "one-1", "two-2"}},
		{"empty and tiny files", "*.log", []step{
			func(e *env) {
				os.WriteFile(p("empty.log")(e), nil, 0o644)
				os.WriteFile(p("tiny.log")(e), []byte("x\n"), 0o644)
				os.WriteFile(p("nl.log")(e), []byte("\n"), 0o644)
			},
		}, []string{"x", ""}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tc.pattern, func(c *Config) { c.CopyWait = 500 * time.Millisecond })
			e.start()
			for _, s := range tc.steps {
				s(e)
			}
			got := e.waitLines(len(tc.want), 10*time.Second)
			time.Sleep(700 * time.Millisecond) // past CopyWait: late duplicates would show
			got = e.sink.lines()
			if err := sameMultiset(got, tc.want); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestInodeReuseAfterRestart: a checkpoint entry whose device/inode now
// holds other content is a new file, not a continuation.
func TestInodeReuseAfterRestart(t *testing.T) {
	e := newEnv(t, "*.log", nil)
	e.start()
	e.write("a.log", seq("old", 1, 20)...)
	e.waitLines(20, 5*time.Second)
	e.halt()
	// Same inode, new content longer than the old offset.
	if err := os.WriteFile(filepath.Join(e.dir, "a.log"), []byte(joinLines(seq("new", 1, 40))), 0o644); err != nil {
		t.Fatal(err)
	}
	e.start()
	got := e.waitLines(60, 5*time.Second)
	if err := sameMultiset(got, concat(seq("old", 1, 20), seq("new", 1, 40))); err != nil {
		t.Fatal(err)
	}
}

// TestRestartResumes: offsets survive a clean restart (R18).
func TestRestartResumes(t *testing.T) {
	e := newEnv(t, "*.log", nil)
	e.start()
	e.write("a.log", seq("x", 1, 100)...)
	e.waitLines(100, 5*time.Second)
	e.halt()
	e.write("a.log", seq("x", 101, 150)...)
	e.start()
	got := e.waitLines(150, 5*time.Second)
	if err := sameMultiset(got, seq("x", 1, 150)); err != nil {
		t.Fatal(err)
	}
}

func joinLines(ls []string) string {
	s := ""
	for _, l := range ls {
		s += l + "\n"
	}
	return s
}

// TestRestartMissedRename: a file that one scan after a restart does not
// see (renamed while the directory was listed; here: parked under a name
// the glob does not match) keeps its checkpoint offset and is not read
// again from its start when it reappears under a matching name.
func TestRestartMissedRename(t *testing.T) {
	e := newEnv(t, "*.log", nil)
	e.start()
	e.write("app.log", seq("x", 1, 100)...)
	e.waitLines(100, 5*time.Second)
	e.halt()
	if err := os.Rename(filepath.Join(e.dir, "app.log"), filepath.Join(e.dir, "app.log.moving")); err != nil {
		t.Fatal(err)
	}
	e.start() // its first full scan does not see the file
	if err := os.Rename(filepath.Join(e.dir, "app.log.moving"), filepath.Join(e.dir, "app.001.log")); err != nil {
		t.Fatal(err)
	}
	e.write("app.001.log", seq("x", 101, 120)...)
	got := e.waitLines(120, 5*time.Second)
	if err := sameMultiset(got, seq("x", 1, 120)); err != nil {
		t.Fatal(err)
	}
}

// TestRestartMissedCopytruncate: the file was copied and truncated while
// the collector was down. The copy continues where the checkpoint says
// reading of the original stopped; nothing is read twice.
func TestRestartMissedCopytruncate(t *testing.T) {
	e := newEnv(t, "*.log", nil)
	e.start()
	e.write("app.log", seq("x", 1, 100)...)
	e.waitLines(100, 5*time.Second)
	e.halt()
	e.write("app.log", seq("x", 101, 120)...)
	copyFile(t, filepath.Join(e.dir, "app.log"), filepath.Join(e.dir, "app.1.log"))
	if err := os.Truncate(filepath.Join(e.dir, "app.log"), 0); err != nil {
		t.Fatal(err)
	}
	e.write("app.log", seq("x", 121, 130)...)
	e.start()
	got := e.waitLines(130, 5*time.Second)
	time.Sleep(200 * time.Millisecond) // a duplicate would arrive with the rest
	if err := sameMultiset(e.sink.lines(), seq("x", 1, 130)); err != nil {
		t.Fatalf("%v (got %d lines)", err, len(got))
	}
}

// TestRestartBeforeCopyFound: the collector saw the truncation, then
// stopped before the copy appeared under a name it collects. The truncation
// is in the checkpoint, so after the restart the copy continues where the
// original was read to.
func TestRestartBeforeCopyFound(t *testing.T) {
	e := newEnv(t, "*.log", nil)
	e.start()
	e.write("app.log", seq("x", 1, 100)...)
	e.waitLines(100, 5*time.Second)
	copyFile(t, filepath.Join(e.dir, "app.log"), filepath.Join(e.dir, "app.log.tmp")) // not matched by *.log
	if err := os.Truncate(filepath.Join(e.dir, "app.log"), 0); err != nil {
		t.Fatal(err)
	}
	e.write("app.log", seq("x", 101, 110)...)
	e.waitLines(110, 5*time.Second)
	e.halt()
	if err := os.Rename(filepath.Join(e.dir, "app.log.tmp"), filepath.Join(e.dir, "app.2.log")); err != nil {
		t.Fatal(err)
	}
	e.start()
	time.Sleep(300 * time.Millisecond)
	if err := sameMultiset(e.sink.lines(), seq("x", 1, 110)); err != nil {
		t.Fatal(err)
	}
}

// TestTruncatedAfterSizeTaken: a read takes the file's size, then the file
// is copied and truncated (copytruncate) before the read looks for a hole
// at its offset. The hole check finds no data there, as it would at a
// hole up to the end, but must not skip to the size taken before: the
// lines written after the last read are in the copy, which continues from
// the offset read to. Seen under load in ccibench's copytruncate scenario
// (one write's 40 lines lost).
func TestTruncatedAfterSizeTaken(t *testing.T) {
	e := newEnv(t, "*.log", nil)
	e.write("app.log", seq("x", 1, 10)...)
	c, err := newCollector(e.cfg, nil, map[string]Sink{DestinationFile: e.sink})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	c.acquire(ctx)
	err = c.cycle(ctx, work{full: true}) // a poll: it keeps following app.log
	c.release()
	if err != nil {
		t.Fatal(err)
	}
	var f *tailFile
	for _, g := range c.files {
		f = g
	}
	if f == nil || f.name != "app.log" {
		t.Fatalf("app.log not followed after a poll: %+v", c.files)
	}
	app := filepath.Join(e.dir, "app.log")
	e.write("app.log", seq("x", 11, 20)...)
	st, err := os.Stat(app)
	if err != nil {
		t.Fatal(err)
	}
	copyFile(t, app, filepath.Join(e.dir, "app.1.log"))
	if err := os.Truncate(app, 0); err != nil {
		t.Fatal(err)
	}
	e.write("app.log", seq("x", 21, 21)...)
	off := f.cur.Off
	c.skipHole(f, st.Size()) // the read's look for a hole, with its size
	if f.cur.Off != off {
		t.Errorf("hole check after the truncation moved the offset from %d to %d (size taken %d)", off, f.cur.Off, st.Size())
	}
	if err := c.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sameMultiset(e.sink.lines(), seq("x", 1, 21)); err != nil {
		t.Fatal(err)
	}
}
