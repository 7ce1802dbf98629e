//go:build linux

package e2eenv

import (
	"fmt"
	"syscall"
	"time"
)

// RestartContainerd stops containerd the way a service manager does (sig, then SIGKILL after
// a grace period; SIGKILL alone for a crash), leaving shims and containers running, waits down
// for down, and starts it again with the same config and environment. Clients made by Client
// and CRI reconnect by themselves. It returns how long containerd was gone.
func (e *Env) RestartContainerd(sig syscall.Signal, down time.Duration) (time.Duration, error) {
	e.t.Helper()
	began := time.Now()
	if e.ContainerdPID() == 0 {
		return 0, fmt.Errorf("containerd is not running")
	}
	_ = e.cmd.Process.Signal(sig)
	select {
	case <-e.exited:
	case <-time.After(containerdTimeout):
		_ = e.cmd.Process.Kill()
		<-e.exited
	}
	time.Sleep(down)
	if err := e.startContainerd(e.opts); err != nil {
		return time.Since(began), fmt.Errorf("restarting containerd: %w\n%s", err, e.logTail(40))
	}
	if e.cri {
		if err := e.waitCRIImages(); err != nil {
			return time.Since(began), fmt.Errorf("CRI after restart: %w", err)
		}
	}
	gone := time.Since(began)
	e.t.Logf("e2eenv: containerd restarted (%v, pid %d), gone %v", sig, e.cmd.Process.Pid, gone.Round(time.Millisecond))
	return gone, nil
}
