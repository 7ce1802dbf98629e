//go:build linux

package kubeenv

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// What a kubelet changes on the host outside its root dir, and that this
// package therefore restores or removes at teardown.
const (
	// LockPath serialises kubelets: one runs on the machine at a time, since
	// each owns the /kubepods cgroups, /var/log/containers and the kernel
	// tunables below.
	LockPath = "/tmp/cci-kubelet.lock"
	// containerLogsDir is where kubelet links every container's log (fixed
	// in kubelet; not configurable).
	containerLogsDir = "/var/log/containers"
	// cgroupRoot is where kubelet's cgroupfs driver puts the pod cgroups
	// (cgroupRoot "/", cgroupsPerQOS) in every hierarchy.
	kubepodsCgroup = "kubepods"
	cgroupMount    = "/sys/fs/cgroup"
	lockWait       = 20 * time.Minute
)

// kubeletHostPaths are what kubelet makes outside its root dir whatever it
// is configured with (the device manager's socket path is fixed), deepest
// first.
var kubeletHostPaths = []string{
	"/var/lib/kubelet/device-plugins/kubelet.sock", "/var/lib/kubelet/device-plugins", "/var/lib/kubelet",
}

// kernelTunables are the sysctls kubelet sets at start (its
// setupKernelTunables, protectKernelDefaults false).
var kernelTunables = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
}

// hostLock is the held kubelet lock.
type hostLock struct{ f *os.File }

// lockHost takes LockPath, waiting (and saying so) while another test
// process holds it.
func lockHost(t TB) (*hostLock, error) {
	f, err := os.OpenFile(LockPath, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", LockPath, err)
	}
	began := time.Now()
	for logged := false; ; time.Sleep(500 * time.Millisecond) {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", LockPath, err)
		}
		if !logged {
			holder, _ := os.ReadFile(LockPath)
			t.Logf("kubeenv: waiting for %s (another kubelet runs: %s)", LockPath, strings.TrimSpace(string(holder)))
			logged = true
		}
		if time.Since(began) > lockWait {
			f.Close()
			return nil, fmt.Errorf("%s still held after %v", LockPath, lockWait)
		}
	}
	if d := time.Since(began); d > time.Second {
		t.Logf("kubeenv: got %s after %v", LockPath, d.Round(time.Second))
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(fmt.Sprintf("pid %d since %s\n", os.Getpid(), time.Now().Format(time.RFC3339))), 0)
	return &hostLock{f: f}, nil
}

func (l *hostLock) release() {
	if l == nil || l.f == nil {
		return
	}
	_ = l.f.Truncate(0)
	_ = unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	l.f.Close()
	l.f = nil
}

// readTunables returns the current values of kernelTunables.
func readTunables() (map[string]string, error) {
	vals := map[string]string{}
	for _, k := range kernelTunables {
		b, err := os.ReadFile(filepath.Join("/proc/sys", k))
		if err != nil {
			return nil, fmt.Errorf("reading sysctl %s: %w", k, err)
		}
		vals[k] = strings.TrimSpace(string(b))
	}
	return vals, nil
}

// restoreTunables writes back what readTunables returned.
func restoreTunables(vals map[string]string) error {
	var errs []error
	for k, v := range vals {
		p := filepath.Join("/proc/sys", k)
		if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == v {
			continue
		}
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restoring sysctl %s=%s: %w", k, v, err))
		}
	}
	return errors.Join(errs...)
}

// cgroupHierarchies returns the mount points of every cgroup hierarchy
// (v1 controllers, named hierarchies and the v2 unified one).
func cgroupHierarchies() ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("reading mountinfo: %w", err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		for i := 6; i < len(fields)-1; i++ {
			if fields[i] == "-" {
				if fields[i+1] == "cgroup" || fields[i+1] == "cgroup2" {
					out = append(out, fields[4])
				}
				break
			}
		}
	}
	return out, nil
}

// kubepodsCgroups returns every cgroup dir at or under kubepods in every
// hierarchy, deepest first.
func kubepodsCgroups() ([]string, error) {
	roots, err := cgroupHierarchies()
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, r := range roots {
		top := filepath.Join(r, kubepodsCgroup)
		_ = filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	sort.SliceStable(dirs, func(i, j int) bool {
		return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/")
	})
	return dirs, nil
}

// podCgroups returns the pod-level cgroups (.../kubepods/[qos/]pod<uid>)
// left in any hierarchy.
func podCgroups() []string {
	dirs, _ := kubepodsCgroups()
	var out []string
	for _, d := range dirs {
		if strings.HasPrefix(filepath.Base(d), "pod") {
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out
}

// removeKubepods removes kubelet's cgroup trees, deepest first. A cgroup
// that still holds a process cannot be removed: that is reported.
func removeKubepods() error {
	dirs, err := kubepodsCgroups()
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range dirs {
		if err := unix.Rmdir(d); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("removing cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// containerLogLinks returns the links in /var/log/containers that point
// under dir (kubelet makes one per container it starts).
func containerLogLinks(dir string) []string {
	ents, err := os.ReadDir(containerLogsDir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		p := filepath.Join(containerLogsDir, e.Name())
		if target, err := os.Readlink(p); err == nil && strings.HasPrefix(target, dir+"/") {
			out = append(out, p)
		}
	}
	return out
}

// hostStatePath keeps a hostState while a kubelet runs, so that the next
// Start can undo what a test process that died left on the host.
const hostStatePath = "/tmp/cci-kubelet.state.json"

// hostState is what the host looked like before kubelet started.
type hostState struct {
	Tunables       map[string]string `json:"tunables"`       // kernelTunables' values
	LogsDirExisted bool              `json:"logsDirExisted"` // /var/log/containers
	MadePaths      []string          `json:"madePaths"`      // kubeletHostPaths that did not exist
}

// captureHostState records the host before kubelet starts, in memory and
// in hostStatePath.
func captureHostState() (*hostState, error) {
	s := &hostState{LogsDirExisted: exists(containerLogsDir)}
	for _, p := range kubeletHostPaths {
		if !exists(p) {
			s.MadePaths = append(s.MadePaths, p)
		}
	}
	var err error
	if s.Tunables, err = readTunables(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encoding host state: %w", err)
	}
	if err := os.WriteFile(hostStatePath, b, 0o600); err != nil {
		return nil, fmt.Errorf("writing %s: %w", hostStatePath, err)
	}
	return s, nil
}

// staleHostState returns the state a dead test process left, or nil.
func staleHostState() (*hostState, error) {
	b, err := os.ReadFile(hostStatePath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", hostStatePath, err)
	}
	var s hostState
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", hostStatePath, err)
	}
	return &s, nil
}

// restore undoes what kubelet changed on the host: it removes kubelet's
// cgroups (they must be empty by now), the log links into envDir and any
// link into an env that is gone, the paths kubelet made, and writes back
// the kernel tunables. Only when all of that worked is hostStatePath removed.
func (s *hostState) restore(envDir string) error {
	var errs []error
	if err := removeKubepods(); err != nil {
		errs = append(errs, err)
	}
	links := containerLogLinks("/tmp")
	for _, p := range links {
		target, _ := os.Readlink(p)
		if (envDir != "" && strings.HasPrefix(target, envDir+"/")) || !exists(target) {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	if !s.LogsDirExisted {
		if err := os.Remove(containerLogsDir); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, err)
		}
	}
	for _, p := range s.MadePaths { // deepest first; a directory only when empty
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("removing %s: %w", p, err))
		}
	}
	if err := restoreTunables(s.Tunables); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := os.Remove(hostStatePath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", hostStatePath, err)
	}
	return nil
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
