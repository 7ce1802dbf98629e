//go:build linux

package kubeenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// proc is one cluster component running as a child of the test process,
// with its output in a log file.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{} // closed once cmd has been waited for
	forget  func()        // undoes Env.KeepProcess
}

// startProc starts bin with args in dir, stdout and stderr appended to
// logPath. The process gets its own process group (a ^C to the test reaches
// it through teardown, not directly) and dies with the test process.
func startProc(name, dir, logPath string, env []string, bin string, args ...string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// running reports whether the process has not exited.
func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILL.
func (p *proc) stop(grace time.Duration) error {
	if p == nil {
		return nil
	}
	defer func() {
		if p.forget != nil {
			p.forget()
		}
	}()
	if !p.running() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.exited:
		return fmt.Errorf("%s did not exit %v after SIGTERM; killed", p.name, grace)
	case <-time.After(5 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.name, p.pid())
	}
}

// logTail returns the last n lines of the process's log.
func (p *proc) logTail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", p.logPath, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return fmt.Sprintf("--- %s log (%s, tail) ---\n%s", p.name, p.logPath, strings.Join(lines, "\n"))
}

// waitReady polls ready until it returns nil, the process exits, or timeout
// passes.
func (p *proc) waitReady(timeout time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if !p.running() {
			return fmt.Errorf("%s exited during startup (%v): last check: %w", p.name, p.cmd.ProcessState, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v: %w", p.name, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// freePorts returns n distinct TCP ports on 127.0.0.1 that were free a moment
// ago. A component that loses the race fails to bind and its start is
// retried (see startWithPorts).
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// addrInUse reports whether a component's log says it lost a port race.
func addrInUse(p *proc) bool {
	b, _ := os.ReadFile(p.logPath)
	return strings.Contains(string(b), "address already in use")
}

// startWithPorts starts a component on fresh ports, retrying a few times
// when another process took a port between freePorts and the bind.
func startWithPorts(n int, start func(ports []int) (*proc, error)) (*proc, error) {
	var lastErr error
	for range 3 {
		ports, err := freePorts(n)
		if err != nil {
			return nil, err
		}
		p, err := start(ports)
		if err == nil {
			return p, nil
		}
		lastErr = err
		if p == nil || !addrInUse(p) {
			return p, err
		}
		_ = p.stop(time.Second)
	}
	return nil, errors.Join(errors.New("ports kept being taken"), lastErr)
}
