package e2eenv

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Program runs an env outside go test (the demo behind `make run`, the bench
// harness): it implements TB for a command. Fatalf and Skipf end the run;
// cleanups run in reverse order whatever happens, also on SIGINT/SIGTERM.
type Program struct {
	out      io.Writer
	cleanups []func()
	failed   bool
}

// errFatal unwinds Run after Fatalf or Skipf.
var errFatal = errors.New("fatal")

// NewProgram returns a Program that logs to out.
func NewProgram(out io.Writer) *Program { return &Program{out: out} }

func (p *Program) Helper()                      {}
func (p *Program) Logf(format string, a ...any) { fmt.Fprintf(p.out, format+"\n", a...) }
func (p *Program) Cleanup(f func())             { p.cleanups = append(p.cleanups, f) }
func (p *Program) Failed() bool                 { return p.failed }

func (p *Program) Errorf(format string, a ...any) {
	p.failed = true
	p.Logf("ERROR: "+format, a...)
}

func (p *Program) Fatalf(format string, a ...any) {
	p.Errorf(format, a...)
	panic(errFatal)
}

// Skipf is fatal in a program: there is nobody to skip to.
func (p *Program) Skipf(format string, a ...any) { p.Fatalf(format, a...) }

// Run calls f, then the cleanups. It returns an error when f failed.
func (p *Program) Run(f func()) (err error) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		if _, ok := <-sigs; ok {
			p.Logf("interrupted: cleaning up")
			p.runCleanups()
			os.Exit(130)
		}
	}()
	defer func() {
		r := recover()
		p.runCleanups()
		if r != nil && r != errFatal {
			panic(r)
		}
		if p.failed {
			err = errors.New("failed")
		}
	}()
	f()
	return nil
}

func (p *Program) runCleanups() {
	for i := len(p.cleanups) - 1; i >= 0; i-- {
		p.cleanups[i]()
	}
	p.cleanups = nil
}
