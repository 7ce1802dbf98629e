//go:build linux

package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ShimOptions configures the shim-cost bench.
type ShimOptions struct {
	// N is the number of measured containers per runtime. Default 10.
	N int
	// Settle is the wait between `ctr run -d` returning and the daemon's
	// figures being read. Default 1.5 s.
	Settle time.Duration
}

// ShimSample is one shim daemon's own cost, read Settle after `ctr run -d`
// of a sleeping container returned: what it spent to create and start the
// container and to watch it since. CPU is schedstat's run time, per
// thread: the process's first thread, the Go runtime's monitor (sysmon,
// the first thread a Go program starts) and the rest (the Ps' threads,
// which run the goroutines).
type ShimSample struct {
	CPUMs     float64 `json:"cpuMs"`
	MainMs    float64 `json:"mainMs"`
	SysmonMs  float64 `json:"sysmonMs"`
	WorkersMs float64 `json:"workersMs"`
	// Threads is the daemon's thread count.
	Threads int `json:"threads"`
	// SysmonSlices and WorkerSlices are schedstat's timeslice counts: how
	// often those threads were put on a CPU (each wakeup at least one).
	SysmonSlices int64 `json:"sysmonSlices"`
	WorkerSlices int64 `json:"workerSlices"`
	MinorFaults  int64 `json:"minorFaults"`
	PSS          int64 `json:"pssBytes"`
}

// ShimSeries is one runtime's samples and their medians, field by field.
type ShimSeries struct {
	Name    string       `json:"name"`
	Runtime string       `json:"runtime"`
	Samples []ShimSample `json:"samples"`
	Median  ShimSample   `json:"median"`
}

// ShimResult is the shim-cost bench's result.
type ShimResult struct {
	N             int          `json:"n"`
	SettleSeconds float64      `json:"settleSeconds"`
	Series        []ShimSeries `json:"series"`
}

// Shim-cost series.
const (
	ShimRunc = "runc shim"
	ShimCCI  = "cci shim, default node config"
)

// Shim measures each runtime's shim daemon alone: o.N sleeping containers
// per runtime started one after another with `ctr run -d`, interleaved,
// each daemon's CPU by thread, wakeups, minor faults and PSS read Settle
// after the run, then the container removed. One container per runtime
// before them is not measured (it warms the page cache). Serial, so a
// daemon's figures are its own work, not the contention of pods starting
// together (density measures that).
func (b *Bench) Shim(ctx context.Context, o ShimOptions) (*ShimResult, error) {
	if o.N <= 0 {
		o.N = 10
	}
	if o.Settle <= 0 {
		o.Settle = 1500 * time.Millisecond
	}
	if err := b.SetThrottle(Defaults()); err != nil {
		return nil, err
	}
	series := []ShimSeries{{Name: ShimRunc, Runtime: Runc}, {Name: ShimCCI, Runtime: CCI}}
	prog := b.progress("shim")
	for i := -1; i < o.N; i++ {
		for j := range series {
			s := &series[j]
			if i < 0 {
				prog.update("warm-up: %s", s.Name)
			} else {
				prog.update("round %d/%d: %s", i+1, o.N, s.Name)
			}
			sample, err := b.shimSample(ctx, s.Runtime, o.Settle)
			if err != nil {
				return nil, fmt.Errorf("shim (%s): %w", s.Name, err)
			}
			if i >= 0 {
				s.Samples = append(s.Samples, sample)
			}
		}
	}
	prog.done("%d rounds of %d runtimes done", o.N, len(series))
	for j := range series {
		s := &series[j]
		s.Median = medianSample(s.Samples)
		m := s.Median
		b.logf("shim: %-30s CPU %.1f ms (main %.1f, sysmon %.1f in %d slices, others %.1f in %d slices), %d minor faults, PSS %.2f MiB (medians, n=%d)",
			s.Name, m.CPUMs, m.MainMs, m.SysmonMs, m.SysmonSlices, m.WorkersMs, m.WorkerSlices, m.MinorFaults, float64(m.PSS)/(1<<20), len(s.Samples))
	}
	return &ShimResult{N: o.N, SettleSeconds: o.Settle.Seconds(), Series: series}, nil
}

// shimSample runs one sleeping container through runtime and reads its
// shim daemon (the task's parent: both shims reap their containers).
func (b *Bench) shimSample(ctx context.Context, runtime string, settle time.Duration) (ShimSample, error) {
	id := b.newID("shim")
	defer b.remove(id)
	if _, err := b.run(ctx, container{runtime: runtime, id: id, detach: true, args: []string{"sleep", "600"}}); err != nil {
		return ShimSample{}, err
	}
	select {
	case <-ctx.Done():
		return ShimSample{}, ctx.Err()
	case <-time.After(settle):
	}
	pid, err := b.taskPID(ctx, id)
	if err != nil {
		return ShimSample{}, err
	}
	f, err := statFields(pid, 4) // ppid is field 4
	if err != nil {
		return ShimSample{}, err
	}
	if shim, _ := strconv.Atoi(f[1]); shim > 1 {
		return readShimSample(shim)
	}
	return ShimSample{}, fmt.Errorf("container %s (pid %d): no shim parent, ppid %s", id, pid, f[1])
}

// readShimSample reads pid's threads' schedstat, its minor faults and PSS.
func readShimSample(pid int) (ShimSample, error) {
	dirs, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return ShimSample{}, err
	}
	var tids []int
	for _, d := range dirs {
		if tid, err := strconv.Atoi(d.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	slices.Sort(tids)
	var s ShimSample
	for _, tid := range tids {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "task", strconv.Itoa(tid), "schedstat"))
		if err != nil {
			continue // the thread exited
		}
		f := strings.Fields(string(b))
		if len(f) < 3 {
			return ShimSample{}, fmt.Errorf("thread %d of %d: schedstat %q", tid, pid, b)
		}
		ns, _ := strconv.ParseInt(f[0], 10, 64)
		n, _ := strconv.ParseInt(f[2], 10, 64)
		ms := float64(ns) / 1e6
		s.Threads++
		s.CPUMs += ms
		switch {
		case tid == pid:
			s.MainMs = ms
		case s.Threads == 2:
			s.SysmonMs, s.SysmonSlices = ms, n
		default:
			s.WorkersMs += ms
			s.WorkerSlices += n
		}
	}
	f, err := statFields(pid, 10) // minflt is field 10
	if err != nil {
		return ShimSample{}, err
	}
	if s.MinorFaults, err = strconv.ParseInt(f[7], 10, 64); err != nil {
		return ShimSample{}, fmt.Errorf("/proc/%d/stat: minflt: %w", pid, err)
	}
	s.PSS, _ = smapsRollup(pid)
	return s, nil
}

// medianSample is the field-by-field median of samples.
func medianSample(samples []ShimSample) ShimSample {
	med := func(get func(ShimSample) float64) float64 {
		xs := make([]float64, len(samples))
		for i, s := range samples {
			xs[i] = get(s)
		}
		return Median(xs)
	}
	return ShimSample{
		CPUMs:        med(func(s ShimSample) float64 { return s.CPUMs }),
		MainMs:       med(func(s ShimSample) float64 { return s.MainMs }),
		SysmonMs:     med(func(s ShimSample) float64 { return s.SysmonMs }),
		WorkersMs:    med(func(s ShimSample) float64 { return s.WorkersMs }),
		Threads:      int(med(func(s ShimSample) float64 { return float64(s.Threads) })),
		SysmonSlices: int64(med(func(s ShimSample) float64 { return float64(s.SysmonSlices) })),
		WorkerSlices: int64(med(func(s ShimSample) float64 { return float64(s.WorkerSlices) })),
		MinorFaults:  int64(med(func(s ShimSample) float64 { return float64(s.MinorFaults) })),
		PSS:          int64(med(func(s ShimSample) float64 { return float64(s.PSS) })),
	}
}

// cpuRatio is series name's median CPU over the runc shim's (0 when either
// is missing).
func (r *ShimResult) cpuRatio(name string) float64 {
	var base, v float64
	for _, s := range r.Series {
		switch s.Name {
		case ShimRunc:
			base = s.Median.CPUMs
		case name:
			v = s.Median.CPUMs
		}
	}
	if base <= 0 || v <= 0 {
		return 0
	}
	return v / base
}

// table is the shim bench's results table.
func (r *ShimResult) table() table {
	t := table{title: fmt.Sprintf("shim: the shim daemon of one sleeping container, read %.1f s after ctr run -d returned, n=%d per runtime, medians", r.SettleSeconds, r.N),
		header: []string{"shim", "CPU", "first thread", "sysmon", "other threads", "threads", "sysmon slices", "other slices", "minor faults", "PSS", "CPU vs runc shim"}}
	for _, s := range r.Series {
		m := s.Median
		ratio := "-"
		if q := r.cpuRatio(s.Name); q > 0 {
			ratio = fmt.Sprintf("%.2fx", q)
		}
		t.rows = append(t.rows, []string{s.Name, fmtMs(m.CPUMs / 1e3), fmtMs(m.MainMs / 1e3), fmtMs(m.SysmonMs / 1e3), fmtMs(m.WorkersMs / 1e3), fmt.Sprint(m.Threads),
			fmt.Sprint(m.SysmonSlices), fmt.Sprint(m.WorkerSlices), fmt.Sprint(m.MinorFaults), fmt.Sprintf("%.2f MiB", float64(m.PSS)/(1<<20)), ratio})
	}
	t.notes = append(t.notes, "CPU: schedstat run time summed over the daemon's threads since it started (its create and start of the container, "+
		"then watching it). Slices: how often a thread was put on a CPU, so at least its wakeups. cci runs the runc task service in its own process.")
	return t
}
