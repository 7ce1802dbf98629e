package interrupt

import (
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// program is a TB like e2eenv.Program: Fatalf panics with a sentinel that
// run recovers after the cleanups.
type program struct {
	mu       sync.Mutex
	log      []string
	cleanups []func()
}

type fatal string

func (p *program) Helper() {}
func (p *program) Logf(f string, a ...any) {
	p.mu.Lock()
	p.log = append(p.log, fmt.Sprintf(f, a...))
	p.mu.Unlock()
}
func (p *program) Errorf(f string, a ...any) { p.Logf("error: "+f, a...) }
func (p *program) Fatalf(f string, a ...any) { panic(fatal(fmt.Sprintf(f, a...))) }
func (p *program) Skipf(f string, a ...any)  { p.Fatalf(f, a...) }
func (p *program) Cleanup(f func())          { p.cleanups = append(p.cleanups, f) }
func (p *program) Failed() bool              { return false }
func (p *program) run(fn func() error) (err error) {
	defer func() {
		r := recover()
		for i := len(p.cleanups) - 1; i >= 0; i-- {
			p.cleanups[i]()
		}
		if f, ok := r.(fatal); ok {
			err = fmt.Errorf("%s", f)
		} else if r != nil {
			panic(r)
		}
	}()
	return fn()
}

func (p *program) logged(s string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.log {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// SIGINT stops the work at its next step; the cleanups run, once, whole,
// even when a second signal arrives during them.
func TestSignalStopsAtNextStep(t *testing.T) {
	p := &program{}
	g := Watch(p)
	defer g.Stop()
	var steps, cleaned int
	otherGoroutine := make(chan struct{})
	err := p.run(g.Work(func() error {
		g.Cleanup(func() {
			syscall.Kill(syscall.Getpid(), syscall.SIGINT) // a second ^C during the cleanup
			time.Sleep(100 * time.Millisecond)
			g.Logf("cleanup still runs")
			g.Helper()
			cleaned++
		})
		for steps = 0; steps < 1000; steps++ {
			if steps == 3 {
				syscall.Kill(syscall.Getpid(), syscall.SIGINT)
				for g.Signal() == nil {
					time.Sleep(time.Millisecond)
				}
				go func() { g.Logf("from another goroutine: no stop here"); close(otherGoroutine) }()
				<-otherGoroutine
			}
			g.Helper()
			g.Logf("step %d", steps)
		}
		return nil
	}))
	if err == nil || !strings.Contains(err.Error(), "interrupted by interrupt") {
		t.Fatalf("err = %v", err)
	}
	if steps != 3 || cleaned != 1 || g.ExitCode() != 130 {
		t.Fatalf("steps %d, cleaned %d, exit code %d", steps, cleaned, g.ExitCode())
	}
	if !p.logged("cleanup still runs") || !p.logged("from another goroutine") {
		t.Errorf("log: %q", p.log)
	}
	time.Sleep(50 * time.Millisecond)
	if !p.logged("while cleaning up: finishing the cleanup first") {
		t.Errorf("the second signal was not reported: %q", p.log)
	}
}

func TestNoSignal(t *testing.T) {
	p := &program{}
	g := Watch(p)
	defer g.Stop()
	if err := p.run(g.Work(func() error { g.Helper(); g.Logf("ok"); return nil })); err != nil || g.Signal() != nil || g.ExitCode() != 0 {
		t.Fatalf("err %v, signal %v", err, g.Signal())
	}
}
