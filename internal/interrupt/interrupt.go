// Package interrupt makes a program that runs a test environment outside go
// test (the demo behind `make run`, ccibench) clean up when it is
// interrupted: the first SIGINT or SIGTERM stops the program at its next
// step, on its own goroutine, so that its registered cleanups run as they do
// at the end of a normal run (containerd, shims, containers, mounts, loop
// devices, the bridge, cgroups), and the program exits 130 (or 143).
//
// A Guard wraps the program's TB (e2eenv.Program): the next call into it
// from the program's goroutine after a signal — env methods start with
// Helper, the demo logs every step — becomes a Fatalf. Calls from other
// goroutines only log; cleanups are never interrupted. A signal during the
// cleanups is reported and otherwise ignored: stopping them would leave
// exactly what they remove.
//
// It is not for long-running services (cci-agent serve uses
// signal.NotifyContext) and knows nothing of what the cleanups do.
package interrupt

import (
	"bytes"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
)

// TB is the part of testing.TB a program's env reports through; it is
// e2eenv.TB, and *e2eenv.Program implements it.
type TB interface {
	Helper()
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Cleanup(func())
	Failed() bool
}

// Guard is a TB that turns SIGINT and SIGTERM into a Fatalf of the program.
type Guard struct {
	TB

	sigs chan os.Signal
	quit chan struct{}

	mu       sync.Mutex
	sig      os.Signal // the first signal; guarded by mu
	stopping bool      // Fatalf called for sig; guarded by mu
	owner    uint64    // the goroutine running the program's work; guarded by mu
	done     bool      // the work returned: cleanups run; guarded by mu
}

var _ TB = (*Guard)(nil)

// Watch starts catching SIGINT and SIGTERM for tb's program. Call Stop when
// the program is done.
func Watch(tb TB) *Guard {
	g := &Guard{TB: tb, sigs: make(chan os.Signal, 4), quit: make(chan struct{})}
	signal.Notify(g.sigs, syscall.SIGINT, syscall.SIGTERM)
	go g.loop()
	return g
}

func (g *Guard) loop() {
	for {
		select {
		case <-g.quit:
			return
		case s := <-g.sigs:
			g.mu.Lock()
			first, done := g.sig == nil, g.done
			if first {
				g.sig = s
			}
			g.mu.Unlock()
			switch {
			case done:
				g.TB.Logf("interrupt: %v while cleaning up: finishing the cleanup first", s)
			case first:
				g.TB.Logf("interrupt: %v: stopping at the next step, then removing everything the program started", s)
			default:
				g.TB.Logf("interrupt: %v again: still stopping; the cleanup follows", s)
			}
		}
	}
}

// Stop stops catching signals.
func (g *Guard) Stop() {
	signal.Stop(g.sigs)
	close(g.quit)
}

// Work wraps the program's work for Program.Run: the goroutine that runs it
// is the one a signal stops, and when it returns the cleanups that follow
// run uninterrupted.
func (g *Guard) Work(fn func() error) func() error {
	return func() error {
		g.mu.Lock()
		g.owner = goid()
		g.mu.Unlock()
		defer func() {
			g.mu.Lock()
			g.done = true
			g.mu.Unlock()
		}()
		g.check()
		return fn()
	}
}

// Signal returns the first signal caught, or nil.
func (g *Guard) Signal() os.Signal {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sig
}

// ExitCode is the conventional exit status after the signal: 128+signal
// (130 for SIGINT, 143 for SIGTERM), or 0 when none came.
func (g *Guard) ExitCode() int {
	if s, ok := g.Signal().(syscall.Signal); ok {
		return 128 + int(s)
	}
	return 0
}

// check stops the program when a signal came, from its own goroutine only.
func (g *Guard) check() {
	g.mu.Lock()
	stop := g.sig != nil && !g.done && !g.stopping && g.owner != 0 && goid() == g.owner
	if stop {
		g.stopping = true
	}
	s := g.sig
	g.mu.Unlock()
	if stop {
		g.TB.Fatalf("interrupted by %v", s)
	}
}

// Helper checks for a signal, then calls the TB's Helper.
func (g *Guard) Helper() {
	g.check()
	g.TB.Helper()
}

// Logf checks for a signal, then logs.
func (g *Guard) Logf(format string, args ...any) {
	g.check()
	g.TB.Logf(format, args...)
}

// Errorf checks for a signal, then reports the error.
func (g *Guard) Errorf(format string, args ...any) {
	g.check()
	g.TB.Errorf(format, args...)
}

// goid is the current goroutine's id, from its stack header ("goroutine N
// [...]"); the only use is telling the program's goroutine from others.
func goid() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	var id uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			break
		}
		id = id*10 + uint64(c-'0')
	}
	return id
}
