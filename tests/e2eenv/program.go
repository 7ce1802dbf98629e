package e2eenv

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

// Program is the TB of a program that runs an env outside go test (the
// demo behind make run, ccibench): the env reports through it, and Run turns
// its failures into an error. Fatalf and Skipf panic with a sentinel that
// Run recovers after running the cleanups; in a test use testing.T instead.
type Program struct {
	w io.Writer

	mu       sync.Mutex // guards the fields below and writes to w
	cleanups []func()
	failed   bool
}

// fatal is the sentinel Fatalf and Skipf panic with.
type fatal struct{ msg string }

func (f fatal) Error() string { return f.msg }

// NewProgram returns a Program that logs to w.
func NewProgram(w io.Writer) *Program { return &Program{w: w} }

// Helper does nothing: a program has no test line numbers to skip.
func (p *Program) Helper() {}

// Logf writes a line to the program's log.
func (p *Program) Logf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format+"\n", args...)
}

// Errorf logs an error and marks the run failed; it does not stop it.
func (p *Program) Errorf(format string, args ...any) {
	p.mu.Lock()
	p.failed = true
	p.mu.Unlock()
	p.Logf("error: "+format, args...)
}

// Fatalf marks the run failed and stops it: it panics with a sentinel that
// Run recovers. Call it only from the goroutine Run called fn on.
func (p *Program) Fatalf(format string, args ...any) {
	p.mu.Lock()
	p.failed = true
	p.mu.Unlock()
	panic(fatal{msg: fmt.Sprintf(format, args...)})
}

// Skipf is fatal in a program: a bench that cannot run has no result.
func (p *Program) Skipf(format string, args ...any) {
	p.Fatalf("cannot run: "+format, args...)
}

// Cleanup registers f to run when Run returns; the last registered runs
// first.
func (p *Program) Cleanup(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cleanups = append(p.cleanups, f)
}

// Failed reports whether Errorf, Fatalf or Skipf was called.
func (p *Program) Failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

// Run calls fn, then runs the cleanups (last registered first), each
// even if an earlier one failed. It returns fn's error, or the message of a
// Fatalf or Skipf, or an error when Errorf was called (during fn or a
// cleanup). Panics other than the sentinel are re-raised after cleanup.
func (p *Program) Run(fn func() error) (err error) {
	defer func() {
		r := recover()
		p.runCleanups()
		switch f, ok := r.(fatal); {
		case ok:
			err = f
		case r != nil:
			panic(r)
		case err == nil && p.Failed():
			err = errors.New("errors were reported (see the log)")
		}
	}()
	return fn()
}

func (p *Program) runCleanups() {
	for {
		p.mu.Lock()
		n := len(p.cleanups)
		if n == 0 {
			p.mu.Unlock()
			return
		}
		f := p.cleanups[n-1]
		p.cleanups = p.cleanups[:n-1]
		p.mu.Unlock()
		p.runCleanup(f)
	}
}

// runCleanup runs f, turning a Fatalf or a panic inside it into a logged
// failure so that the remaining cleanups (containerd's teardown among them)
// still run.
func (p *Program) runCleanup(f func()) {
	defer func() {
		if r := recover(); r != nil {
			p.mu.Lock()
			p.failed = true
			p.mu.Unlock()
			p.Logf("error: cleanup: %v", r)
		}
	}()
	f()
}
