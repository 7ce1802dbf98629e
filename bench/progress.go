//go:build linux

package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// progressEvery is the least time between two progress lines of one
// phase; the last line of a phase is always printed.
const progressEvery = time.Second

// progressLine prints a bench's progress while it runs: "[  12.3 s] what".
type progressLine struct {
	say  func(string)
	name string
	last time.Time
}

// progress returns the progress printer of one phase of command name.
func (b *Bench) progress(name string) *progressLine { return &progressLine{say: b.say, name: name} }

// update prints the line unless one was printed less than progressEvery
// ago.
func (p *progressLine) update(format string, args ...any) {
	if time.Since(p.last) < progressEvery {
		return
	}
	p.done(format, args...)
}

// done prints the line.
func (p *progressLine) done(format string, args ...any) {
	p.last = time.Now()
	p.say(p.name + ": " + fmt.Sprintf(format, args...))
}

// say prints one progress line, with the time since the bench started.
func (b *Bench) say(msg string) {
	line := stamp(b.began, msg)
	b.progressMu.Lock()
	defer b.progressMu.Unlock()
	if b.progressOut != nil {
		b.progressOut(line)
		return
	}
	b.tb.Logf("%s", line)
}

// stamp prefixes msg with the time since began.
func stamp(began time.Time, msg string) string {
	return fmt.Sprintf("[%6.1f s] %s", time.Since(began).Seconds(), msg)
}

// removeCgroups removes the cgroups the env's containers left: the OCI
// runtime removes a container's own cgroup but not its parent, the
// containerd namespace's (/<namespace> under every controller). Only
// empty directories go (rmdir): a cgroup still in use stays.
func (b *Bench) removeCgroups() {
	if b.Env == nil || b.Env.Namespace == "" || strings.ContainsAny(b.Env.Namespace, "/.") {
		return
	}
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", b.Env.Namespace))
	if d := filepath.Join("/sys/fs/cgroup", b.Env.Namespace); isDir(d) {
		dirs = append(dirs, d) // a unified hierarchy
	}
	for _, top := range dirs {
		var all []string
		filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				all = append(all, p)
			}
			return nil
		})
		sort.Slice(all, func(i, j int) bool { return len(all[i]) > len(all[j]) }) // deepest first
		for _, d := range all {
			if err := os.Remove(d); err != nil {
				b.logf("cleanup: cgroup %s stays: %v", d, err)
			}
		}
	}
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}
