//go:build linux

package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Process categories of the host processes a pod brings (ProcUsage.Kind).
const (
	KindCCIShim  = "cci shim"        // containerd-shim-cci-v2
	KindRuncShim = "runc shim"       // containerd-shim-runc-v2: the runc handler's shim, or the cci shim's backend
	KindSandbox  = "sandbox (runsc)" // gVisor's sandbox and gofer processes
	KindWorkload = "workload"        // the containers' own processes (pause, the command)
)

// ProcUsage is the memory and CPU time of one process category, summed.
type ProcUsage struct {
	Kind  string `json:"kind"`
	Count int    `json:"count"`
	// PSS is the proportional set size (smaps_rollup), bytes: shared pages
	// (the binary's text) are split between the processes mapping them,
	// so summing PSS over N pods' processes counts each page once.
	PSS int64 `json:"pssBytes"`
	RSS int64 `json:"rssBytes"`
	// CPUSeconds is user+system time so far.
	CPUSeconds float64 `json:"cpuSeconds"`
}

// AddedByUs reports whether a category is a host process the platform adds
// to a pod (as opposed to the pod's own containers).
func AddedByUs(kind string) bool { return kind != KindWorkload }

type proc struct {
	pid, ppid int
	comm      string
	exe       string
}

// listProcs reads every process's pid, parent, comm and executable.
func listProcs() map[int]proc {
	out := map[int]proc{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		i, j := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
		if i < 0 || j < i {
			continue
		}
		f := strings.Fields(string(stat[j+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		out[pid] = proc{pid: pid, ppid: ppid, comm: string(stat[i+1 : j]), exe: exe}
	}
	return out
}

// classify names the category of p, a process under a shim of the env.
// It goes by the executable's name: comm is cut at 15 bytes, so every shim
// is "containerd-shim" there.
func classify(p proc) string {
	exe := filepath.Base(strings.TrimSuffix(p.exe, " (deleted)"))
	switch {
	case exe == "containerd-shim-cci-v2":
		return KindCCIShim
	case exe == "containerd-shim-runc-v2":
		return KindRuncShim
	case strings.HasPrefix(exe, "runsc") || strings.HasPrefix(p.comm, "runsc"):
		return KindSandbox
	}
	return KindWorkload
}

// podProcs returns the given shims and all their descendants, each with
// its category.
func podProcs(shims []int) map[int]string {
	all := listProcs()
	children := map[int][]int{}
	for _, p := range all {
		children[p.ppid] = append(children[p.ppid], p.pid)
	}
	out := map[int]string{}
	var walk func(pid int)
	walk = func(pid int) {
		p, ok := all[pid]
		if !ok || out[pid] != "" {
			return
		}
		out[pid] = classify(p)
		for _, c := range children[pid] {
			walk(c)
		}
	}
	for _, pid := range shims {
		walk(pid)
	}
	return out
}

// procUsage sums PSS, RSS and CPU time of procs per category, in the order of
// kinds.
func procUsage(procs map[int]string) []ProcUsage {
	by := map[string]*ProcUsage{}
	for pid, kind := range procs {
		u := by[kind]
		if u == nil {
			u = &ProcUsage{Kind: kind}
			by[kind] = u
		}
		pss, rss := smapsRollup(pid)
		cpu, _ := procCPU(pid)
		u.Count++
		u.PSS += pss
		u.RSS += rss
		u.CPUSeconds += cpu
	}
	var out []ProcUsage
	for _, k := range []string{KindCCIShim, KindRuncShim, KindSandbox, KindWorkload} {
		if u := by[k]; u != nil {
			out = append(out, *u)
		}
	}
	return out
}

// smapsRollup returns the Pss and Rss of pid from /proc/<pid>/smaps_rollup,
// in bytes (0, 0 when it is gone).
func smapsRollup(pid int) (pss, rss int64) {
	kb := procKB(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss", "Rss")
	return kb["Pss"], kb["Rss"]
}
