//go:build linux

package e2eenv

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// RSS returns the resident set size of pid in bytes (VmRSS in /proc/<pid>/status).
// It returns 0 when the process is gone or is a kernel thread.
func RSS(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		rest, ok := strings.CutPrefix(s.Text(), "VmRSS:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest) // "1234 kB"
		if len(fields) != 2 || fields[1] != "kB" {
			return 0
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0
		}
		return kb << 10
	}
	return 0
}

// ShimPIDs returns the pids of the running shim daemons with the given binary name (e.g.
// CCIShimBinary, RuncShimBinary) that belong to this env's containerd, sorted.
func (e *Env) ShimPIDs(runtimeBinary string) []int {
	var pids []int
	for _, p := range scanProcs() {
		if p.comm() == filepath.Base(runtimeBinary) && strings.Contains(p.cmdline, e.Address) {
			pids = append(pids, p.pid)
		}
	}
	sort.Ints(pids)
	return pids
}

type procInfo struct {
	pid, ppid int
	cmdline   string // NUL bytes replaced by spaces
	argv0     string
}

// comm is the base name of argv[0] (shims re-exec themselves, so /proc/pid/comm may be
// truncated to 15 bytes while argv[0] is not).
func (p procInfo) comm() string { return filepath.Base(p.argv0) }

// scanProcs reads every process's pid, ppid and command line. Processes that vanish while
// reading are skipped.
func scanProcs() []procInfo {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var procs []procInfo
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ...": comm may contain spaces and parentheses.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		argv := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		procs = append(procs, procInfo{pid: pid, ppid: ppid, cmdline: strings.Join(argv, " "), argv0: argv[0]})
	}
	return procs
}

// relatedProcs returns the processes that belong to this env: those whose command line names
// Dir or Address, whose working directory is under Dir (shims run in their bundle), or whose
// environment names Address (shims get GRPC_ADDRESS), plus all their descendants (the
// containers). The test process, its ancestors and the pids in exclude are never included.
func (e *Env) relatedProcs(exclude ...int) []procInfo {
	procs := scanProcs()
	skip := map[int]bool{}
	for _, pid := range exclude {
		skip[pid] = true
	}
	byPID := map[int]procInfo{}
	for _, p := range procs {
		byPID[p.pid] = p
	}
	for pid := os.Getpid(); pid > 1; pid = byPID[pid].ppid {
		skip[pid] = true
		if _, ok := byPID[pid]; !ok {
			break
		}
	}

	related := map[int]bool{}
	for _, p := range procs {
		if skip[p.pid] {
			continue
		}
		if e.references(p) {
			related[p.pid] = true
		}
	}
	// Descendants: repeat until no new process joins (the tree is shallow).
	for changed := true; changed; {
		changed = false
		for _, p := range procs {
			if !related[p.pid] && !skip[p.pid] && related[p.ppid] {
				related[p.pid] = true
				changed = true
			}
		}
	}
	var out []procInfo
	for _, p := range procs {
		if related[p.pid] {
			out = append(out, p)
		}
	}
	return out
}

func (e *Env) references(p procInfo) bool {
	if strings.Contains(p.cmdline, e.Dir+"/") || strings.Contains(p.cmdline, e.Address) {
		return true
	}
	if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", p.pid)); err == nil && under(cwd, e.Dir) {
		return true
	}
	if env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.pid)); err == nil {
		for _, kv := range strings.Split(string(env), "\x00") {
			if strings.HasPrefix(kv, "GRPC_ADDRESS=") && strings.TrimPrefix(kv, "GRPC_ADDRESS=") == e.Address {
				return true
			}
			if strings.HasPrefix(kv, NodeConfigEnv+"=") && strings.TrimPrefix(kv, NodeConfigEnv+"=") == e.NodeConfigPath {
				return true
			}
		}
	}
	return false
}

// under reports whether p is dir or inside it.
func under(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}

type mountInfo struct {
	mountPoint, fsType, source string
}

// mountsUnder returns the mounts at or below dir in this process's mount namespace, deepest
// (and, at equal depth, latest) first: the order to unmount them in.
func mountsUnder(dir string) ([]mountInfo, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("reading mountinfo: %w", err)
	}
	defer f.Close()
	var out []mountInfo
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superopts
		fields := strings.Fields(s.Text())
		if len(fields) < 10 {
			continue
		}
		mp := unescapeMountPath(fields[4])
		if !under(mp, dir) {
			continue
		}
		m := mountInfo{mountPoint: mp}
		for i := 6; i < len(fields)-2; i++ {
			if fields[i] == "-" {
				m.fsType, m.source = fields[i+1], unescapeMountPath(fields[i+2])
				break
			}
		}
		out = append(out, m)
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("reading mountinfo: %w", err)
	}
	// Stable sort by depth keeps mountinfo order (older first) among equals; reverse it.
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	sort.SliceStable(out, func(i, j int) bool {
		return strings.Count(out[i].mountPoint, "/") > strings.Count(out[j].mountPoint, "/")
	})
	return out, nil
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for space and so on).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// loopsBackedUnder returns the loop devices (/dev/loopN) whose backing file is under dir.
func loopsBackedUnder(dir string) []string {
	matches, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var out []string
	for _, m := range matches {
		b, err := os.ReadFile(m)
		if err != nil {
			continue
		}
		backing := strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)")
		if under(backing, dir) {
			out = append(out, "/dev/"+filepath.Base(filepath.Dir(filepath.Dir(m))))
		}
	}
	sort.Strings(out)
	return out
}

// socketsUnder returns the unix sockets in the trees under dirs, not descending into other
// filesystems (a container's mounted rootfs is reported as a mount, not walked).
func socketsUnder(dirs ...string) []string { return filesOfTypeUnder(os.ModeSocket, dirs...) }

// fifosUnder lists the FIFOs in dirs, as socketsUnder does sockets.
func fifosUnder(dirs ...string) []string { return filesOfTypeUnder(os.ModeNamedPipe, dirs...) }

func filesOfTypeUnder(mode os.FileMode, dirs ...string) []string {
	var out []string
	for _, d := range dirs {
		var root unix.Stat_t
		if err := unix.Lstat(d, &root); err != nil {
			continue
		}
		_ = filepath.WalkDir(d, func(p string, ent os.DirEntry, err error) error {
			if err != nil {
				return nil // vanished or unreadable: not ours to judge here
			}
			if ent.IsDir() {
				var st unix.Stat_t
				if unix.Lstat(p, &st) == nil && st.Dev != root.Dev {
					return filepath.SkipDir
				}
			}
			if ent.Type()&mode != 0 {
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}
