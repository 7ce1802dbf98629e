package logfwd

import (
	"context"
	"errors"
	"github.com/cci-shim/cci-shim/internal/forwardtest"
	"log/slog"
	"testing"
	"time"
)

// runCollector starts c.Run in a goroutine; the channel yields its result.
func runCollector(t *testing.T, c *Collector) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background()) }()
	t.Cleanup(func() { c.Close() })
	return done
}

// waitRun fails the test unless Run returned nil within d.
func waitRun(t *testing.T, done <-chan error, d time.Duration) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(d):
		t.Fatalf("Run did not return within %v", d)
	}
}

// drainWithin drains c with a deadline of d and checks that it returned
// within d plus a margin; it returns Drain's error.
func drainWithin(t *testing.T, c *Collector, d time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	err := c.Drain(ctx)
	if el := time.Since(start); el > d+time.Second {
		t.Errorf("Drain with a %v deadline took %v", d, el)
	}
	return err
}

// TestDrainForwardDown (issue 10): the Forward destination is down while
// Run retries a delivery. Drain gives up at its deadline with ErrNotDrained
// instead of hanging, Run returns, and a collector started later from the
// checkpoint delivers the rest: every line exactly once.
func TestDrainForwardDown(t *testing.T) {
	r := forwardtest.New(t)
	e := forwardEnv(t, r, func(c *Config) { c.MaxBatchBytes = 8 << 10 })
	c, err := New(e.cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	done := runCollector(t, c)
	first := seq("up", 1, 300)
	e.write("a.log", first...)
	if !waitFor(5*time.Second, func() bool { return len(r.Lines()) >= len(first) }) {
		t.Fatalf("got %d of %d lines before the outage", len(r.Lines()), len(first))
	}
	r.Down()
	second := seq("down", 1, 2000)
	e.write("a.log", second...)
	if !waitFor(5*time.Second, func() bool { return c.Stats().SinkErrors > 0 }) {
		t.Fatal("no delivery was attempted while the destination was down")
	}
	err = drainWithin(t, c, time.Second)
	if !errors.Is(err, ErrNotDrained) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Drain: %v; want ErrNotDrained and the deadline", err)
	}
	t.Logf("Drain: %v", err)
	waitRun(t, done, time.Second)

	r.Up()
	c2, err := New(e.cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := drainWithin(t, c2, 10*time.Second); err != nil {
		t.Fatalf("second Drain: %v", err)
	}
	if err := sameMultiset(r.Lines(), concat(first, second)); err != nil {
		t.Fatal(err)
	}
}

// TestDrainForwardSlow: the destination accepts connections and reads but
// stops acknowledging (hangs) after two chunks. Drain still returns at its
// deadline; what was acknowledged plus what a later collector delivers is
// every line exactly once (unacknowledged chunks are not delivered).
func TestDrainForwardSlow(t *testing.T) {
	r := forwardtest.New(t)
	r.StallAfter(2)
	e := forwardEnv(t, r, func(c *Config) {
		c.MaxBatchBytes = 8 << 10
		c.Forward.AckTimeout = time.Minute // only Drain's deadline can end the wait
	})
	c, err := New(e.cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	done := runCollector(t, c)
	want := seq("slow", 1, 3000)
	e.write("a.log", want...)
	if !waitFor(5*time.Second, func() bool { return r.Unacked() > 0 }) {
		t.Fatal("the receiver never stalled")
	}
	err = drainWithin(t, c, time.Second)
	if !errors.Is(err, ErrNotDrained) {
		t.Fatalf("Drain: %v; want ErrNotDrained", err)
	}
	waitRun(t, done, time.Second)
	acked := len(r.Lines())
	if acked == 0 || acked >= len(want) {
		t.Fatalf("%d of %d lines acknowledged before the stall", acked, len(want))
	}

	r.StallAfter(0)
	c2, err := New(e.cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := drainWithin(t, c2, 10*time.Second); err != nil {
		t.Fatalf("second Drain: %v", err)
	}
	if err := sameMultiset(r.Lines(), want); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d lines acknowledged before the stall, the rest after the restart", acked)
}

// TestCloseAndUpdateWhileSinkDown: Close and UpdateWatches do not wait for
// a delivery that is being retried; after Close a new collector delivers
// everything once.
func TestCloseAndUpdateWhileSinkDown(t *testing.T) {
	e := newEnv(t, "*.log", nil)
	e.sink.mu.Lock()
	e.sink.fail = true
	e.sink.mu.Unlock()
	c, err := newCollector(e.cfg, slog.New(slog.DiscardHandler), map[string]Sink{DestinationFile: e.sink})
	if err != nil {
		t.Fatal(err)
	}
	done := runCollector(t, c)
	want := seq("x", 1, 500)
	e.write("a.log", want...)
	if !waitFor(5*time.Second, func() bool { return c.Stats().SinkErrors > 1 }) {
		t.Fatal("no retried delivery")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	if err := c.UpdateWatches(ctx, e.cfg.Watches); err != nil {
		t.Fatalf("UpdateWatches while the sink is down: %v", err)
	}
	if el := time.Since(start); el > preemptGrace+500*time.Millisecond {
		t.Errorf("UpdateWatches waited %v", el)
	}
	start = time.Now()
	c.Close()
	if el := time.Since(start); el > preemptGrace+500*time.Millisecond {
		t.Errorf("Close waited %v", el)
	}
	waitRun(t, done, time.Second)
	if s := c.Stats(); s.Lines != 0 {
		t.Fatalf("%d lines delivered by a sink that refuses", s.Lines)
	}

	e.sink.mu.Lock()
	e.sink.fail = false
	e.sink.mu.Unlock()
	c2, err := newCollector(e.cfg, slog.New(slog.DiscardHandler), map[string]Sink{DestinationFile: e.sink})
	if err != nil {
		t.Fatal(err)
	}
	if err := drainWithin(t, c2, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := sameMultiset(e.sink.lines(), want); err != nil {
		t.Fatal(err)
	}
}

// TestDrainTwiceRepeatsNothing: a collector started on a volume that was
// already drained (the delete subcommand after a shim that drained, say)
// delivers nothing again.
func TestDrainTwiceRepeatsNothing(t *testing.T) {
	e := newEnv(t, "*.log", nil)
	e.write("a.log", seq("d", 1, 100)...)
	for i := 0; i < 2; i++ {
		c, err := newCollector(e.cfg, slog.New(slog.DiscardHandler), map[string]Sink{DestinationFile: e.sink})
		if err != nil {
			t.Fatal(err)
		}
		if err := drainWithin(t, c, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if err := sameMultiset(e.sink.lines(), seq("d", 1, 100)); err != nil {
		t.Fatal(err)
	}
}
