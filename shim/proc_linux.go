package shim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// procID names a process for as long as it lives: a pid alone is reused by
// the kernel, (pid, start time) is not. Every pid this shim persists is
// persisted as a procID, and nothing is signalled unless it still matches.
type procID struct {
	Pid       int    `json:"pid"`
	StartTime uint64 `json:"start_time"` // field 22 of /proc/<pid>/stat, clock ticks since boot
}

// identify records pid's identity now.
func identify(pid int) (procID, error) {
	st, err := readStartTime(pid)
	if err != nil {
		return procID{}, err
	}
	return procID{Pid: pid, StartTime: st}, nil
}

// readStartTime returns the start time of pid, or an error if it does not
// exist.
func readStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	fields, err := statFields(b)
	if err != nil || len(fields) < 20 {
		return 0, fmt.Errorf("parsing /proc/%d/stat: short record", pid)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// statFields splits /proc/<pid>/stat after the command name, which may hold
// spaces and parentheses: fields[0] is the state (field 3).
func statFields(b []byte) ([]string, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, errors.New("no command name")
	}
	return strings.Fields(string(b[i+1:])), nil
}

// alive reports whether the process still runs and is the one recorded (a
// zombie counts as gone: it only waits to be reaped).
func (p procID) alive() bool {
	if p.Pid <= 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.Pid) + "/stat")
	if err != nil {
		return false
	}
	fields, err := statFields(b)
	if err != nil || len(fields) < 20 || fields[0] == "Z" {
		return false
	}
	st, err := strconv.ParseUint(fields[19], 10, 64)
	return err == nil && st == p.StartTime
}

// kill sends SIGKILL to the process if, and only if, it is still the one
// recorded. It goes through a pidfd, checked after opening, so a pid reused
// between the check and the signal is never hit.
func (p procID) kill() error {
	if !p.alive() {
		return nil
	}
	fd, err := unix.PidfdOpen(p.Pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return fmt.Errorf("pidfd_open %d: %w", p.Pid, err)
	}
	defer unix.Close(fd)
	if !p.alive() { // the pidfd may name a newer process with the same pid
		return nil
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("killing %d: %w", p.Pid, err)
	}
	return nil
}

// stop waits up to grace for the process to exit by itself, then kills it
// and waits again. A grace of 0 kills at once. It reports whether the
// process is gone.
func (p procID) stop(ctx context.Context, grace time.Duration) bool {
	if !p.alive() {
		return true
	}
	if grace > 0 {
		if p.waitGone(grace) {
			return true
		}
		log.G(ctx).WithField("pid", p.Pid).Warn("process did not exit in time; killing it")
	}
	if err := p.kill(); err != nil {
		log.G(ctx).WithError(err).Warn("killing process")
	}
	return p.waitGone(5 * time.Second)
}

// waitGone polls until the process is gone or a zombie. The shim is a
// subreaper: the backend, orphaned by its start command, is its child and
// containerd's reaper collects it.
func (p procID) waitGone(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for p.alive() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}
