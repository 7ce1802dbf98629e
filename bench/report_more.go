//go:build linux

package bench

import (
	"fmt"
	"strings"
)

// startRatio returns the median of series name over the baseline series'
// (0 when either is missing).
func (s *StartResult) startRatio(baseline, name string) float64 {
	var base, v float64
	for _, se := range s.Series {
		if se.Skipped != "" {
			continue
		}
		if se.Name == baseline {
			base = se.Median
		}
		if se.Name == name {
			v = se.Median
		}
	}
	if base <= 0 || v <= 0 {
		return 0
	}
	return v / base
}

// series returns the density series called name (nil when it did not run).
func (d *DensityResult) series(name string) *DensitySeries {
	for i := range d.Series {
		if d.Series[i].Name == name && d.Series[i].Skipped == "" {
			return &d.Series[i]
		}
	}
	return nil
}

// moreChecks are the checks of issue 14's targets: start, density, logs,
// burst.
func (r *Results) moreChecks() []Check {
	var cs []Check
	add := func(name, measured, target string, ok bool) { cs = append(cs, Check{name, measured, target, ok}) }
	if s := r.Start; s != nil {
		for _, base := range []struct{ name, label string }{{StartRunc, "runc"}, {StartRuncSeccomp, "runc + default seccomp"}} {
			for _, c := range []struct {
				name   string
				target float64
			}{{StartCCIOff, TargetStartOff}, {StartCCIDefaults, TargetStartDefault}, {StartCCIBurst, TargetStartDefault}} {
				if q := s.startRatio(base.name, c.name); q > 0 {
					add("start, ctr run --rm true: "+c.name+" / "+base.label+" (medians)", fmt.Sprintf("%.2fx", q), fmt.Sprintf("<= %.2fx", c.target), q <= c.target)
				}
			}
		}
	}
	if d := r.Density; d != nil {
		cci := d.series(DensityCCI)
		for _, base := range []struct{ name, label string }{{DensityRunc, "runc"}, {DensityRuncSeccomp, "runc + default seccomp"}} {
			runc := d.series(base.name)
			if runc == nil || cci == nil || runc.Wall <= 0 {
				continue
			}
			q := cci.Wall / runc.Wall
			add(fmt.Sprintf("density: %d pods, %d at a time, wall cci / %s", d.Pods, d.Parallel, base.label),
				fmt.Sprintf("%.2fx (%.2f s / %.2f s)", q, cci.Wall, runc.Wall), fmt.Sprintf("<= %.2fx", TargetDensityWall), q <= TargetDensityWall)
		}
		runc := d.series(DensityRunc)
		if runc != nil && cci != nil {
			added := cci.PSSPerPod("", d.Pods) - runc.PSSPerPod("", d.Pods)
			add(fmt.Sprintf("density: host PSS per pod the cci handler adds over runc's (%s)", d.Workload),
				fmt.Sprintf("%+.2f MiB (%.2f vs %.2f MiB)", added/(1<<20), cci.PSSPerPod("", d.Pods)/(1<<20), runc.PSSPerPod("", d.Pods)/(1<<20)),
				fmt.Sprintf("<= %d MiB", TargetAddedPSS>>20), added <= TargetAddedPSS)
		}
	}
	if l := r.Logs; l != nil {
		if t := l.Throughput; t != nil {
			add("logs: collector throughput to the file sink, per CPU second", fmt.Sprintf("%.0f MB/s (%.0f MB/s wall)", t.PerCoreBps/1e6, t.WallBps/1e6),
				fmt.Sprintf(">= %.0f MB/s", TargetLogsPerCore/1e6), t.PerCoreBps >= TargetLogsPerCore)
		}
		for _, lt := range l.Latency {
			if lt.Mode == "inotify" {
				add("logs: write->sink p99 with inotify", fmt.Sprintf("%.1f ms (p50 %.1f ms, %d missing)", lt.P99*1e3, lt.P50*1e3, lt.Missing),
					fmt.Sprintf("<= %.0f ms, none missing", TargetLogsP99*1e3), lt.P99 <= TargetLogsP99 && lt.Missing == 0)
			}
		}
		for _, sc := range l.Scenarios {
			target, ok := "0 lost, 0 duplicated", sc.Lost == 0 && sc.Duplicated == 0
			if sc.Kills > 0 {
				target, ok = "0 duplicated; loss only as explained", sc.Duplicated == 0 && (sc.Lost == 0 || sc.Note != "")
			}
			add(fmt.Sprintf("logs: %s, %d SIGKILLs", sc.Name, sc.Kills), fmt.Sprintf("%d of %d delivered, %d lost, %d duplicated", sc.Delivered, sc.Written, sc.Lost, sc.Duplicated), target, ok)
		}
	}
	if b := r.Burst; b != nil {
		for _, p := range b.Phases {
			add("burst: "+p.Name+", sustained after the budget", fmt.Sprintf("%.0f %s (%+.2f%%)", p.Sustained, p.Unit, (p.Sustained/p.Limit-1)*100),
				fmt.Sprintf("%.0f %s ±%.0f%%", p.Limit, p.Unit, TargetRootfsTol*100), Within(p.Sustained, p.Limit, TargetRootfsTol))
		}
	}
	return cs
}

// moreTables are the tables of density, logs and burst.
func (r *Results) moreTables() []table {
	var ts []table
	if d := r.Density; d != nil {
		title := fmt.Sprintf("density: %d pods through CRI, %d at a time, workload %s", d.Pods, d.Parallel, d.Workload)
		if d.Rounds > 1 {
			title += fmt.Sprintf(", %d rounds interleaved (medians)", d.Rounds)
		}
		t := table{title: title,
			header: []string{"series", "all running", "vs runc", "per pod p50", "p99", "host PSS/pod we add", "cci shim", "runc shim", "runsc", "workload", "CPU/pod (shims+sandbox)", "host CPU to start/pod", "host mounts/pod", "teardown"}}
		runc := d.series(DensityRunc)
		for _, s := range d.Series {
			if s.Skipped != "" {
				row := make([]string, len(t.header))
				row[0], row[1] = s.Name, "skipped"
				t.rows = append(t.rows, row)
				t.notes = append(t.notes, fmt.Sprintf("%s: skipped: %s", s.Name, s.Skipped))
				continue
			}
			ratio := "-"
			if runc != nil && runc.Wall > 0 {
				ratio = fmt.Sprintf("%.2fx", s.Wall/runc.Wall)
			}
			mib := func(kind string) string {
				v := s.PSSPerPod(kind, d.Pods)
				if v == 0 && kind != "" {
					return "-"
				}
				return fmt.Sprintf("%.2f MiB", v/(1<<20))
			}
			var cpu float64
			for k, v := range s.CPUPerPod {
				if AddedByUs(k) {
					cpu += v
				}
			}
			t.rows = append(t.rows, []string{s.Name, fmtSec(s.Wall), ratio, fmtSec(s.P50), fmtSec(s.P99), mib(""), mib(KindCCIShim), mib(KindRuncShim),
				mib(KindSandbox), mib(KindWorkload), fmt.Sprintf("%.2f%% of a core", cpu*100), fmtSec(s.StartCPU), fmt.Sprintf("%.1f", s.MountsPerPod), fmtSec(s.Teardown)})
			if len(s.Walls) > 1 {
				walls := make([]string, len(s.Walls))
				for i, w := range s.Walls {
					walls[i] = fmtSec(w)
				}
				t.notes = append(t.notes, fmt.Sprintf("%s: all running per round %s", s.Name, strings.Join(walls, ", ")))
				if rs := roundRatios(s, runc); len(rs) > 1 {
					t.notes = append(t.notes, fmt.Sprintf("%s: vs runc round by round %s, median %.2fx", s.Name, fmtRatios(rs), Median(rs)))
				}
			}
			if len(s.Calls) > 0 {
				calls := make([]string, 0, len(criCalls))
				for _, c := range criCalls {
					calls = append(calls, fmt.Sprintf("%s %s", c, fmtSec(Percentile(s.Calls[c], 50))))
				}
				t.notes = append(t.notes, fmt.Sprintf("%s: per pod p50 by call: %s", s.Name, strings.Join(calls, ", ")))
			}
		}
		t.notes = append(t.notes, "all running: first RunPodSandbox to the last StartContainer returning. Per pod: RunPodSandbox + CreateContainer + StartContainer. "+
			"PSS (smaps_rollup) of the pod's host processes after the pods settled, summed and divided by the pod count; "+
			"'we add' is everything but the workload (pause and the container's command); the runc handler's figure is its one shim per pod. "+
			"Host CPU to start: the machine's busy CPU time (/proc/stat, every process) over 'all running', divided by the pod count. "+
			"Host mounts: the mounts the running pods added to the host's mount table, per pod.")
		if d.Measure > 0 {
			t.notes = append(t.notes, fmt.Sprintf("PSS was read %v after all pods ran (--settle), CPU per pod measured over the %v after that (--measure).", d.Settle, d.Measure))
		}
		if d.Rounds > 1 {
			t.notes = append(t.notes, "Memory and CPU are the first round's; per pod p50/p99 are over every round's pods.")
		}
		if d.RestrictOOM {
			t.notes = append(t.notes, "This host refuses a negative oom_score_adj, which CRI asks for every pod sandbox: containerd ran with "+
				"restrict_oom_score_adj = true, which clamps it to containerd's own for every handler.")
		}
		ts = append(ts, t)
		if by := d.startCPUTable(); by != nil {
			ts = append(ts, *by)
		}
	}
	if l := r.Logs; l != nil {
		if tp := l.Throughput; tp != nil {
			ts = append(ts, table{title: "logs: collector throughput (logfwd, one collector, file sink)",
				header: []string{"bytes", "lines", "wall", "CPU", "per CPU second", "wall rate"},
				rows: [][]string{{fmt.Sprint(tp.Bytes), fmt.Sprint(tp.Lines), fmtSec(tp.Wall), fmtSec(tp.CPU),
					fmt.Sprintf("%.0f MB/s", tp.PerCoreBps/1e6), fmt.Sprintf("%.0f MB/s", tp.WallBps/1e6)}},
				notes: []string{"100-byte lines already on disk, drained (read, JSON-encoded, written and fsynced, checkpointed) by one collector; CPU is the process's user+system time."}})
		}
		if len(l.Latency) > 0 {
			t := table{title: "logs: write->sink latency (a new file every second)", header: []string{"discovery", "lines", "p50", "p99", "max", "missing"}}
			for _, lt := range l.Latency {
				t.rows = append(t.rows, []string{lt.Mode, fmt.Sprint(len(lt.Seconds) + lt.Missing), fmtMs(lt.P50), fmtMs(lt.P99), fmtMs(lt.Max), fmt.Sprint(lt.Missing)})
			}
			t.notes = append(t.notes, "Each line carries its write time; the bench follows the sink file with inotify. Poll only: discovery every 5 s (R16), so a new file waits for the next poll.")
			ts = append(ts, t)
		}
		if len(l.Scenarios) > 0 {
			t := table{title: "logs: loss and duplication across rotations and SIGKILLs", header: []string{"rotation", "SIGKILLs", "written", "delivered", "lost", "duplicated", "note"}}
			for _, sc := range l.Scenarios {
				t.rows = append(t.rows, []string{sc.Name, fmt.Sprint(sc.Kills), fmt.Sprint(sc.Written), fmt.Sprint(sc.Delivered), fmt.Sprint(sc.Lost), fmt.Sprint(sc.Duplicated), strings.Trim(sc.Note+"; "+sc.Where, "; ")})
			}
			t.notes = append(t.notes, fmt.Sprintf("4000 lines a second, rotated every %d lines. SIGKILL runs kill the collector process every 200-600 ms and restart it from its checkpoint; the last one drains on SIGTERM.", rotateEvery))
			ts = append(ts, t)
		}
	}
	if b := r.Burst; b != nil {
		t := table{title: fmt.Sprintf("burst: iothrottle's start burst on %s, then R8 (%d B/s, %d IOPS)", b.Device, b.Limits.WriteBps, b.Limits.WriteIOPS),
			header: []string{"phase", "budget", "ended by", "after", "overshoot", "burst rate", "sustained", "vs limit", "over"}}
		for _, p := range b.Phases {
			t.rows = append(t.rows, []string{p.Name, budgetText(p.Budget), p.End.Reason, fmtSec(p.End.After.Seconds()), overshootText(p),
				fmt.Sprintf("%.0f %s", p.BurstRate, p.Unit), fmt.Sprintf("%.0f %s", p.Sustained, p.Unit),
				fmt.Sprintf("%+.2f%%", (p.Sustained/p.Limit-1)*100), fmtSec(p.SustainedSeconds)})
		}
		t.notes = append(t.notes, "One dd (direct I/O) per phase in a fresh blkio cgroup, running through the budget and on under the limits without a pause. "+
			"Sustained: from the first counter sample after the switch (every 20 ms) to dd's end. Overshoot: what passed between the watcher's last two looks.")
		ts = append(ts, t)
	}
	return ts
}

func fmtMs(s float64) string { return fmt.Sprintf("%.1f ms", s*1e3) }

// startCPUTable splits each series' host CPU to start per pod by process
// (DensitySeries.StartCPUBy); nil when no series has the split.
func (d *DensityResult) startCPUTable() *table {
	t := table{title: "density: host CPU to start per pod, by process (ms; medians over rounds)",
		header: append(append([]string{"series"}, StartCPUKeys...), "total")}
	for _, s := range d.Series {
		if s.StartCPUBy == nil {
			continue
		}
		row := []string{s.Name}
		for _, k := range StartCPUKeys {
			row = append(row, fmt.Sprintf("%.1f", s.StartCPUBy[k]*1000))
		}
		t.rows = append(t.rows, append(row, fmt.Sprintf("%.1f", s.StartCPU*1000)))
	}
	if len(t.rows) == 0 {
		return nil
	}
	t.notes = append(t.notes, "From /proc/<pid>/stat when the last pod runs: each process's own CPU time, and its reaped children's (cutime, cstime), "+
		"which the kernel adds to the parent that waits for them. containerd: its own; 'shim start, CNI': the processes containerd ran and reaped "+
		"(each pod's `shim start`, the CNI plugins); shims: the pods' shim daemons' own; shims' children: runc create, start and state; "+
		"'containers to exec': the containers' processes so far (runc init up to exec, with the seccomp filter's load); rest: the total "+
		"(/proc/stat) less all these: the kernel's threads and interrupts, anything else running. A column's medians need not add up to the total's.")
	return &t
}

// roundRatios is s's wall over base's, round by round: the rounds are
// interleaved, so each ratio compares series run within seconds of each
// other, and their median is less moved by the machine's speed drifting
// over a run than the ratio of the two medians. Nil when s is base or a
// round is missing.
func roundRatios(s DensitySeries, base *DensitySeries) []float64 {
	if base == nil || s.Name == base.Name || len(s.Walls) != len(base.Walls) {
		return nil
	}
	out := make([]float64, 0, len(s.Walls))
	for i, w := range s.Walls {
		if base.Walls[i] <= 0 {
			return nil
		}
		out = append(out, w/base.Walls[i])
	}
	return out
}

func fmtRatios(rs []float64) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%.2fx", r)
	}
	return strings.Join(parts, ", ")
}
