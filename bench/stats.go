//go:build linux

package bench

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Median returns the median of xs (the mean of the middle two for an even
// count); 0 for none.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// Percentile returns the p-th percentile (0..100) of xs by the
// nearest-rank method: the smallest value with at least p% of the values
// at or below it; 0 for none.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

// Within reports whether got is within frac (0.05 = ±5%) of want.
func Within(got, want, frac float64) bool {
	return want != 0 && math.Abs(got/want-1) <= frac
}

// procMemory returns VmHWM and VmRSS of pid in bytes (0, 0 when it is
// gone).
func procMemory(pid int) (hwm, rss int64) {
	kb := procKB(fmt.Sprintf("/proc/%d/status", pid), "VmHWM", "VmRSS")
	return kb["VmHWM"], kb["VmRSS"]
}

// procKB reads the "Key:   1234 kB" lines named by keys from a /proc file,
// in bytes; a key it lacks (or a file that is gone) reads 0.
func procKB(path string, keys ...string) map[string]int64 {
	out := make(map[string]int64, len(keys))
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		key, rest, ok := strings.Cut(s.Text(), ":")
		if !ok || !slices.Contains(keys, key) {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			continue
		}
		if kb, err := strconv.ParseInt(fields[0], 10, 64); err == nil {
			out[key] = kb << 10
		}
	}
	return out
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat
// (100 on every Linux architecture Go supports).
const clockTicks = 100

// procCPU returns the user+system CPU time of pid in seconds.
func procCPU(pid int) (float64, bool) {
	self, _, ok := procCPUSplit(pid)
	return self, ok
}

// procCPUSplit returns the user+system CPU time of pid itself and of its
// children it has waited for (and theirs), in seconds.
func procCPUSplit(pid int) (self, children float64, ok bool) {
	// utime, stime, cutime and cstime are fields 14 to 17.
	f, err := statFields(pid, 17)
	if err != nil {
		return 0, 0, false
	}
	var t [4]uint64
	for k := range t {
		if t[k], err = strconv.ParseUint(f[11+k], 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return float64(t[0]+t[1]) / clockTicks, float64(t[2]+t[3]) / clockTicks, true
}

// statFields returns the fields of /proc/<pid>/stat after "pid (comm)",
// comm being the one that may hold spaces: field n of proc(5) is f[n-3].
// It fails unless the line has at least n fields.
func statFields(pid, n int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: no ')' in %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < n-2 {
		return nil, fmt.Errorf("/proc/%d/stat: %d fields, want %d", pid, len(f)+2, n)
	}
	return f, nil
}

// machineCPU returns the busy and total CPU time of all CPUs from
// /proc/stat, in clock ticks (idle and iowait count as not busy).
func machineCPU() (busy, total uint64, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0, 0, false
	}
	var idle uint64
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, false
		}
		if i >= 8 { // guest and guest_nice are already in user and nice
			break
		}
		total += n
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		}
	}
	return total - idle, total, true
}

// LoadAvg returns the 1-minute load average ("" when unreadable).
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// Contention is what else ran on the machine during a command: other
// engineers' end-to-end runs compete for the CPUs and the disk.
type Contention struct {
	// Samples were taken every contentionEvery; BusySamples saw shims of
	// another containerd (containers running outside this bench).
	Samples     int `json:"samples"`
	BusySamples int `json:"busySamples"`
	// MaxOtherContainerds and MaxOtherShims are the most seen at once.
	MaxOtherContainerds int `json:"maxOtherContainerds"`
	MaxOtherShims       int `json:"maxOtherShims"`
}

const contentionEvery = 2 * time.Second

// watchContention samples the machine's other containerds and shims until
// the returned function is called; that returns what was seen.
func watchContention(ownDir string) (stop func() Contention) {
	var (
		c    Contention
		mu   sync.Mutex
		done = make(chan struct{})
		wg   sync.WaitGroup
	)
	sample := func() {
		cds, shims := otherProcs(ownDir)
		mu.Lock()
		defer mu.Unlock()
		c.Samples++
		if shims > 0 {
			c.BusySamples++
		}
		c.MaxOtherContainerds, c.MaxOtherShims = max(c.MaxOtherContainerds, cds), max(c.MaxOtherShims, shims)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(contentionEvery)
		defer tick.Stop()
		for {
			sample()
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() Contention {
		close(done)
		wg.Wait()
		sample()
		mu.Lock()
		defer mu.Unlock()
		return c
	}
}

// otherProcs counts the containerd daemons and containerd shims running on
// the machine whose command line does not name ownDir (this bench's env).
func otherProcs(ownDir string) (containerds, shims int) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		raw, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(raw) == 0 || strings.Contains(string(raw), ownDir+"/") {
			continue
		}
		argv0, _, _ := strings.Cut(string(raw), "\x00")
		switch base := filepath.Base(argv0); {
		case base == "containerd":
			containerds++
		case strings.HasPrefix(base, "containerd-shim"):
			shims++
		}
	}
	return containerds, shims
}
