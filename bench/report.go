//go:build linux

package bench

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// Results is everything one ccibench command measured.
type Results struct {
	Command string         `json:"command"`
	Host    Host           `json:"host"`
	Stdout  *StdoutResult  `json:"stdout,omitempty"`
	Rootfs  *RootfsResult  `json:"rootfs,omitempty"`
	Start   *StartResult   `json:"start,omitempty"`
	Shim    *ShimResult    `json:"shim,omitempty"`
	Density *DensityResult `json:"density,omitempty"`
	Logs    *LogsResult    `json:"logs,omitempty"`
	Burst   *BurstResult   `json:"burst,omitempty"`
}

// Host describes the machine and how busy it was.
type Host struct {
	Kernel string `json:"kernel"`
	CPUs   int    `json:"cpus"`
	Cgroup string `json:"cgroup"`
	Began  string `json:"began"`
	// Seconds is the command's duration, containerd's start included.
	Seconds float64 `json:"seconds"`
	// Load averages (1, 5, 15 min) before and after.
	LoadBefore string `json:"loadBefore"`
	LoadAfter  string `json:"loadAfter"`
	// Contention is what other end-to-end runs did meanwhile.
	Contention Contention `json:"contention"`
}

// Targets of the checks (SPEC R8, R14 and the bench's brief).
const (
	TargetStdoutRatio  = 0.95 // cci/runc unthrottled stdout throughput, at least (issue 14)
	TargetStdioTol     = 0.02 // forwarded rate within ±2% of the stdio throttle
	TargetWriterTol    = 0.05 // the container's writer within ±5% of it
	TargetRootfsTol    = 0.05 // rootfs B/s and IOPS within ±5% of the limit
	TargetVolumeFaster = 5.0  // a volume at least 5x faster than the rootfs
	TargetShimRSS      = 64 << 20

	// Issue 14's targets (ratios against the baseline in the same run).
	TargetStartDefault = 1.20    // ctr run --rm true, cci default config / runc, at most
	TargetStartOff     = 1.10    // the same with every throttle off
	TargetDensityWall  = 1.10    // N pods started P at a time, cci wall / runc wall
	TargetAddedPSS     = 3 << 20 // PSS per pod the cci handler adds over the runc handler's
	TargetLogsPerCore  = 200e6   // collector bytes per CPU second to the file sink
	TargetLogsP99      = 0.050   // write->sink p99 with inotify, seconds
)

// Check is one figure against its target.
type Check struct {
	Name     string `json:"name"`
	Measured string `json:"measured"`
	Target   string `json:"target"`
	OK       bool   `json:"ok"`
}

// Checks lists the results against their targets.
func (r *Results) Checks() []Check {
	var cs []Check
	add := func(name, measured, target string, ok bool) {
		cs = append(cs, Check{name, measured, target, ok})
	}
	rel := func(got, want float64) string { return fmt.Sprintf("%+.2f%%", (got/want-1)*100) }
	if s := r.Stdout; s != nil {
		if s.Ratio > 0 {
			add("stdout throughput cci (throttle off) / runc", fmt.Sprintf("%.3f (%.1f / %.1f MB/s, medians; reps %.2f..%.2f)",
				s.Ratio, s.CCIMedianBps/1e6, s.RuncMedianBps/1e6, s.RatioMin, s.RatioMax), fmt.Sprintf(">= %.2f", TargetStdoutRatio), s.Ratio >= TargetStdoutRatio)
			ok := true
			for _, u := range s.Unthrottled {
				ok = ok && u.SHA256OK
			}
			add("stdout unthrottled: every byte, in order", fmt.Sprintf("sha256 equal in %s", allOrSome(s.Unthrottled)), "sha256 equal", ok)
		}
		if t := s.Throttled; t != nil {
			want := float64(t.StdioBps)
			add("stdout throttled: forwarded rate", fmt.Sprintf("%.0f B/s (%s)", t.ForwardedBps, rel(t.ForwardedBps, want)),
				fmt.Sprintf("%d B/s ±%.0f%%", t.StdioBps, TargetStdioTol*100), Within(t.ForwardedBps, want, TargetStdioTol))
			add("stdout throttled: container's write rate (backpressure)", fmt.Sprintf("%.0f B/s (%s)", t.ContainerBps, rel(t.ContainerBps, want)),
				fmt.Sprintf("%d B/s ±%.0f%%", t.StdioBps, TargetWriterTol*100), Within(t.ContainerBps, want, TargetWriterTol))
			add("stdout throttled: every byte, in order", fmt.Sprintf("%d of %d bytes, sha256 equal: %v", t.Bytes, t.Want, t.SHA256OK), "sha256 equal", t.SHA256OK)
			add("stdout throttled: cci shim peak RSS", fmt.Sprintf("%.1f MiB", float64(t.ShimPeakRSS)/(1<<20)),
				fmt.Sprintf("< %d MiB", TargetShimRSS>>20), t.ShimPeakRSS > 0 && t.ShimPeakRSS < TargetShimRSS)
		}
	}
	if f := r.Rootfs; f != nil {
		bps := func(name string, got float64, limit uint64) {
			add(name, fmt.Sprintf("%.0f B/s (%s)", got, rel(got, float64(limit))),
				fmt.Sprintf("%d B/s ±%.0f%%", limit, TargetRootfsTol*100), Within(got, float64(limit), TargetRootfsTol))
		}
		iops := func(name string, got float64, limit uint64) {
			add(name, fmt.Sprintf("%.0f IOPS (%s)", got, rel(got, float64(limit))),
				fmt.Sprintf("%d IOPS ±%.0f%%", limit, TargetRootfsTol*100), Within(got, float64(limit), TargetRootfsTol))
		}
		bps("rootfs direct write, dd bs=1M oflag=direct", f.WriteBps, f.Limits.WriteBps)
		bps("rootfs direct read, dd bs=1M iflag=direct", f.ReadBps, f.Limits.ReadBps)
		iops("rootfs direct write, dd bs=4k oflag=direct", f.WriteIOPS, f.Limits.WriteIOPS)
		iops("rootfs direct read, dd bs=4k iflag=direct", f.ReadIOPS, f.Limits.ReadIOPS)
		add("volume vs rootfs, dd bs=1M oflag=direct", fmt.Sprintf("%.1fx (%.0f vs %.0f B/s)", f.VolumeSpeedup, f.VolumeWriteBps, f.WriteBps),
			fmt.Sprintf(">= %.0fx", TargetVolumeFaster), f.VolumeSpeedup >= TargetVolumeFaster)
	}
	cs = append(cs, r.moreChecks()...)
	return cs
}

func allOrSome(runs []StreamRun) string {
	n := 0
	for _, r := range runs {
		if r.SHA256OK {
			n++
		}
	}
	return fmt.Sprintf("%d of %d runs", n, len(runs))
}

// table is one block of output, rendered as text or Markdown.
type table struct {
	title  string
	header []string
	rows   [][]string
	notes  []string
}

func (t table) text(w io.Writer) {
	fmt.Fprintf(w, "\n== %s ==\n", t.title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(t.header, "\t"))
	for _, r := range t.rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
	for _, n := range t.notes {
		fmt.Fprintln(w, n)
	}
}

func (t table) markdown(w io.Writer) {
	fmt.Fprintf(w, "\n### %s\n\n", t.title)
	fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(t.header, " | "), strings.Repeat(" --- |", len(t.header)))
	for _, r := range t.rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
	}
	if len(t.notes) > 0 {
		fmt.Fprintln(w)
	}
	for _, n := range t.notes {
		fmt.Fprintf(w, "%s\n", n)
	}
}

func verdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISS"
}

func (r *Results) tables() []table {
	var ts []table
	if cs := r.Checks(); len(cs) > 0 {
		t := table{title: "checks", header: []string{"check", "measured", "target", "verdict"}}
		for _, c := range cs {
			t.rows = append(t.rows, []string{c.Name, c.Measured, c.Target, verdict(c.OK)})
		}
		ts = append(ts, t)
	}
	if s := r.Stdout; s != nil {
		t := table{title: fmt.Sprintf("stdout: %d MB of pseudo-random bytes (x%d unthrottled), busybox cat from a volume", s.MB, s.Repeat),
			header: []string{"#", "runtime", "stdio_bps", "bytes", "forwarded", "peak 1 s", "container writer", "wall", "cci shim peak RSS", "CPU s/GB: cci shim, runc shim", "machine CPU busy", "sha256"}}
		runs := append([]StreamRun(nil), s.Unthrottled...)
		if s.Throttled != nil {
			runs = append(runs, *s.Throttled)
		}
		for i, u := range runs {
			th, rss, peak, cpu := "off", "-", "-", "-"
			if u.Runtime == Runc {
				th = "n/a"
			} else {
				rss = fmt.Sprintf("%.1f MiB", float64(u.ShimPeakRSS)/(1<<20))
			}
			if gb := float64(u.Bytes) / 1e9; gb > 0 {
				cpu = fmt.Sprintf("%.2f, %.2f", u.ShimCPUSeconds/gb, u.RuncShimCPUSeconds/gb)
			}
			if u.StdioBps > 0 {
				th = fmt.Sprint(u.StdioBps)
			}
			if u.PeakWindowBps > 0 {
				peak = fmtRate(u.PeakWindowBps)
			}
			t.rows = append(t.rows, []string{fmt.Sprint(i + 1), shortRuntime(u.Runtime), th, fmt.Sprint(u.Bytes), fmtRate(u.ForwardedBps), peak,
				fmtRate(u.ContainerBps), fmt.Sprintf("%.2f s", u.Wall), rss, cpu, fmt.Sprintf("%.0f%%", u.MachineBusy*100), verdict(u.SHA256OK)})
		}
		t.notes = append(t.notes, "forwarded: bytes reaching ctr's stdout after its first read, over first-to-last read; "+
			"container writer: the bytes over the time cat took, from $EPOCHREALTIME inside the container.")
		if th := s.Throttled; th != nil && th.Shim != nil {
			t.notes = append(t.notes, fmt.Sprintf("cci shim stats.json (last snapshot; rewritten each second while it changes): %d bytes forwarded, %d waits for tokens totalling %.1f s, burst %d B.",
				th.Shim.BytesForwarded, th.Shim.Waits, th.Shim.WaitTime.Seconds(), th.Shim.Burst))
		}
		ts = append(ts, t)
	}
	if f := r.Rootfs; f != nil {
		t := table{title: fmt.Sprintf("rootfs: busybox dd on %s, limits %d/%d B/s and %d/%d IOPS (read/write)", f.Device,
			f.Limits.ReadBps, f.Limits.WriteBps, f.Limits.ReadIOPS, f.Limits.WriteIOPS),
			header: []string{"phase", "file", "ops x block", "time", "B/s", "IOPS", "device I/O charged to the cgroup during the phase"}}
		for _, p := range f.Phases {
			dev := "(volume: another device)"
			if d := p.Device; d != nil {
				dev = fmt.Sprintf("read %d B in %d IOs, write %d B in %d IOs", d.ReadBytes, d.ReadIOs, d.WriteBytes, d.WriteIOs)
			}
			t.rows = append(t.rows, []string{p.Name, p.Path, fmt.Sprintf("%d x %d B", p.Ops, p.Block), fmt.Sprintf("%.2f s", p.Seconds),
				fmt.Sprintf("%.0f", p.Bps), fmt.Sprintf("%.0f", p.IOPS), dev})
		}
		t.notes = append(t.notes, "Timed inside the container with $EPOCHREALTIME around dd (busybox dd, not fio); "+
			"the device column is the delta of blkio.throttle.io_service_bytes / io_serviced of the container's cgroup.")
		ts = append(ts, t)
	}
	if s := r.Start; s != nil {
		t := table{title: fmt.Sprintf("start: ctr run --rm IMAGE ID true, n=%d per configuration, interleaved", s.N),
			header: []string{"configuration", "median", "p90", "min", "max", "median vs runc", "vs runc + default seccomp"}}
		for _, se := range s.Series {
			if se.Skipped != "" {
				t.rows = append(t.rows, []string{se.Name, "-", "-", "-", "-", "skipped", ""})
				t.notes = append(t.notes, fmt.Sprintf("%s: skipped: %s", se.Name, se.Skipped))
				continue
			}
			lo, hi := Percentile(se.Seconds, 0), Percentile(se.Seconds, 100)
			ratio := func(base string) string {
				if q := s.startRatio(base, se.Name); q > 0 {
					return fmt.Sprintf("%.2fx", q)
				}
				return "-"
			}
			t.rows = append(t.rows, []string{se.Name, fmtSec(se.Median), fmtSec(se.P90), fmtSec(lo), fmtSec(hi), ratio(StartRunc), ratio(StartRuncSeccomp)})
		}
		med := map[string]float64{}
		for _, se := range s.Series {
			med[se.Name] = se.Median
		}
		throttled := StartCCIDefaults
		if med[StartCCINoBurst] > 0 {
			throttled = StartCCINoBurst
		}
		if d := med[throttled] - med[StartCCIOff]; s.BusyboxBytes > 0 && s.ReadBps > 0 && d > 0 {
			t.notes = append(t.notes, fmt.Sprintf("The rootfs throttle without a start burst adds %.3f s to the median: the image's busybox binary is %d bytes, "+
				"and reading it at the rootfs read limit of %d B/s takes %.3f s. That is the rule (R8), not the shim.",
				d, s.BusyboxBytes, s.ReadBps, float64(s.BusyboxBytes)/float64(s.ReadBps)))
		}
		ts = append(ts, t)
	}
	if s := r.Shim; s != nil {
		ts = append(ts, s.table())
	}
	ts = append(ts, r.moreTables()...)
	h := r.Host
	c := h.Contention
	ts = append(ts, table{title: "machine", header: []string{"kernel", "CPUs", "cgroup", "load before", "load after", "samples with other envs' shims", "duration"},
		rows: [][]string{{h.Kernel, fmt.Sprint(h.CPUs), h.Cgroup, h.LoadBefore, h.LoadAfter,
			fmt.Sprintf("%d of %d (up to %d shims, %d other containerds)", c.BusySamples, c.Samples, c.MaxOtherShims, c.MaxOtherContainerds),
			fmt.Sprintf("%.0f s", h.Seconds)}},
		notes: []string{r.busyNote()}})
	return ts
}

// busyNote says what else ran on the machine during the command.
func (r *Results) busyNote() string {
	h, c := r.Host, r.Host.Contention
	var load float64
	fmt.Sscan(h.LoadBefore, &load)
	if c.BusySamples > 0 || load > float64(h.CPUs)/2 {
		return fmt.Sprintf("Other end-to-end runs had containers on the machine during %d of %d samples (every %v, up to %d shims); "+
			"1-minute load average %.2f before the command on %d CPUs: the figures may include contention.",
			c.BusySamples, c.Samples, contentionEvery, c.MaxOtherShims, load, h.CPUs)
	}
	return fmt.Sprintf("The machine was quiet: no other containers in %d samples (every %v), load average %.2f before the command.",
		c.Samples, contentionEvery, load)
}

// WriteText writes the results as plain-text tables.
func (r *Results) WriteText(w io.Writer) {
	for _, t := range r.tables() {
		t.text(w)
	}
}

func fmtRate(bps float64) string {
	if bps >= 1e7 {
		return fmt.Sprintf("%.1f MB/s", bps/1e6)
	}
	return fmt.Sprintf("%.0f B/s", bps)
}

func fmtSec(s float64) string {
	if math.IsNaN(s) {
		return "-"
	}
	return fmt.Sprintf("%.3f s", s)
}
