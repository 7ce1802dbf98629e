//go:build linux

package e2eenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ownerFile in Dir records the test process that owns the env ("pid starttime"), so that a
// later Start can clean up after a test binary that died without its cleanups (go test
// -timeout, SIGKILL, a crash).
const ownerFile = "owner"

// writeOwner records this process as the owner of dir.
func writeOwner(dir string) error {
	st, err := procStartTime(os.Getpid())
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, ownerFile), []byte(fmt.Sprintf("%d %s\n", os.Getpid(), st)))
}

// procStartTime is field 22 of /proc/<pid>/stat: with the pid, it names a process uniquely.
func procStartTime(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", fmt.Errorf("reading stat of %d: %w", pid, err)
	}
	i := strings.LastIndexByte(string(b), ')')
	fields := strings.Fields(string(b[i+1:]))
	if i < 0 || len(fields) < 20 {
		return "", fmt.Errorf("parsing stat of %d", pid)
	}
	return fields[19], nil
}

// ownerAlive reports whether the process recorded in dir's owner file still runs. A dir
// without an owner file counts as alive unless it is over an hour old: Start writes the file
// right after creating the dir.
func ownerAlive(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if errors.Is(err, os.ErrNotExist) {
		st, err := os.Stat(dir)
		return err == nil && time.Since(st.ModTime()) < time.Hour
	}
	if err != nil {
		return true
	}
	fields := strings.Fields(string(b))
	if len(fields) != 2 {
		return true
	}
	pid, err := strconv.Atoi(fields[0])
	if err != nil {
		return true
	}
	st, err := procStartTime(pid)
	return err == nil && st == fields[1]
}

// reapStale tears down the envs of test processes that died without cleaning up: their
// processes, mounts, loop devices, CNI bridges and dirs.
func reapStale(t TB, tools toolPaths) {
	t.Helper()
	dirs, _ := filepath.Glob("/tmp/cci-e2e-*")
	for _, dir := range dirs {
		if ownerAlive(dir) {
			continue
		}
		t.Logf("e2eenv: cleaning up the env of a test process that died: %s", dir)
		stale := layout(t, dir)
		var errs []error
		if err := stale.killLeftovers(); err != nil {
			errs = append(errs, err)
		}
		if err := unmountAll(dir); err != nil {
			errs = append(errs, err)
		}
		if err := detachLoops(dir); err != nil {
			errs = append(errs, err)
		}
		if _, err := os.Stat("/sys/class/net/" + stale.BridgeName); err == nil && tools.ip != "" {
			if _, err := run(tools.ip, "link", "delete", stale.BridgeName); err != nil {
				errs = append(errs, err)
			}
		}
		if m, err := mountsUnder(dir); err == nil && len(m) == 0 {
			if err := os.RemoveAll(dir); err != nil {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			t.Logf("e2eenv: cleaning up %s: %v", dir, err)
		}
	}
}
