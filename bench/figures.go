//go:build linux

package bench

import (
	"fmt"
	"strings"

	"gonum.org/v1/plot/plotter"
)

// Charts draws the report's figures from the results (none for a result
// the command did not measure).
func (r *Results) Charts() ([]Chart, error) {
	var out []Chart
	add := func(name, title string, render func() ([]byte, error)) error {
		svg, err := render()
		if err != nil {
			return err
		}
		out = append(out, Chart{Name: name, Title: title, SVG: svg})
		return nil
	}
	if c, ok := r.accuracyChart(); ok {
		if err := add("accuracy", "throttle accuracy", c.render); err != nil {
			return nil, err
		}
	}
	if s := r.Start; s != nil {
		c := barChart{title: fmt.Sprintf("Pod start latency, ctr run --rm ... true (n=%d)", s.N), unit: "seconds",
			groups: []barGroup{{name: "median"}, {name: "p90"}}}
		for _, se := range s.Series {
			if se.Skipped == "" {
				c.labels = append(c.labels, se.Name)
				c.groups[0].values = append(c.groups[0].values, se.Median)
				c.groups[1].values = append(c.groups[1].values, se.P90)
			}
		}
		if len(c.labels) > 0 {
			if err := add("start", "start latency", c.render); err != nil {
				return nil, err
			}
		}
	}
	if s := r.Shim; s != nil {
		c := barChart{title: fmt.Sprintf("Shim daemon CPU to a running container, by thread (medians, n=%d)", s.N), unit: "ms", stacked: true,
			groups: []barGroup{{name: "first thread"}, {name: "sysmon"}, {name: "other threads"}}}
		for _, se := range s.Series {
			c.labels = append(c.labels, se.Name)
			c.groups[0].values = append(c.groups[0].values, se.Median.MainMs)
			c.groups[1].values = append(c.groups[1].values, se.Median.SysmonMs)
			c.groups[2].values = append(c.groups[2].values, se.Median.WorkersMs)
		}
		if err := add("shim", "shim daemon CPU", c.render); err != nil {
			return nil, err
		}
	}
	if d := r.Density; d != nil {
		lc := lineChart{title: fmt.Sprintf("Density: per-pod start time, %d pods, %d at a time", d.Pods, d.Parallel),
			xLabel: "seconds (RunPodSandbox to StartContainer returned)", yLabel: "fraction of pods"}
		bc := barChart{title: fmt.Sprintf("Host memory per pod (PSS), workload %s", d.Workload), unit: "MiB per pod", stacked: true}
		kinds := []string{KindCCIShim, KindRuncShim, KindSandbox, KindWorkload}
		for _, k := range kinds {
			bc.groups = append(bc.groups, barGroup{name: k})
		}
		for _, s := range d.Series {
			if s.Skipped != "" {
				continue
			}
			lc.series = append(lc.series, lineSeries{name: s.Name, xy: cdf(s.PerPod)})
			bc.labels = append(bc.labels, s.Name)
			for i, k := range kinds {
				bc.groups[i].values = append(bc.groups[i].values, s.PSSPerPod(k, d.Pods)/(1<<20))
			}
		}
		if len(lc.series) > 0 {
			if err := add("density-start", "density: per-pod start time", lc.render); err != nil {
				return nil, err
			}
			if err := add("density-pss", "density: host memory per pod", bc.render); err != nil {
				return nil, err
			}
		}
	}
	if l := r.Logs; l != nil && len(l.Latency) > 0 {
		lc := lineChart{title: "Log collection: write->sink latency", xLabel: "seconds (log scale)", yLabel: "fraction of lines", logX: true}
		for _, lt := range l.Latency {
			lc.series = append(lc.series, lineSeries{name: lt.Mode, xy: cdf(lt.Seconds)})
		}
		if err := add("logs-latency", "logs: write->sink latency", lc.render); err != nil {
			return nil, err
		}
	}
	if b := r.Burst; b != nil && len(b.Phases) > 0 {
		for _, p := range b.Phases {
			lc := lineChart{title: fmt.Sprintf("Start burst: %s, budget %s", p.Name, budgetText(p.Budget)), xLabel: "seconds since the watch began"}
			var got, limit plotter.XYs
			scale, unit := 1e6, "MB"
			if p.Unit == "IOPS" {
				scale, unit = 1, "operations"
			}
			lc.yLabel = unit + " through the device"
			for _, tp := range p.Timeline {
				v := float64(tp.Bytes)
				if p.Unit == "IOPS" {
					v = float64(tp.Ops)
				}
				got = append(got, plotter.XY{X: tp.T, Y: v / scale})
			}
			// R8's slope from the switch: where the line must run after it.
			sw := p.End.After.Seconds()
			var at float64
			for _, pt := range got {
				if pt.X >= sw {
					at = pt.Y
					break
				}
			}
			if n := len(got); n > 0 {
				limit = plotter.XYs{{X: sw, Y: at}, {X: got[n-1].X, Y: at + (got[n-1].X-sw)*p.Limit/scale}}
			}
			lc.series = []lineSeries{{name: "measured (cgroup counters)", xy: got}, {name: fmt.Sprintf("R8 from the switch (%.0f %s)", p.Limit, p.Unit), xy: limit, dashed: true}}
			name := "burst-" + strings.NewReplacer(" ", "-", "KiB", "k", "MiB", "m").Replace(p.Name)
			if err := add(name, "burst: "+p.Name, lc.render); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// accuracyChart plots each throttled figure as a fraction of its limit,
// with the ±5% band.
func (r *Results) accuracyChart() (barChart, bool) {
	c := barChart{title: "Throttle accuracy: measured / limit (band: ±5%)", unit: "measured / configured limit", xmax: 1.25, ref: 1, band: TargetRootfsTol,
		groups: []barGroup{{}}}
	frac := func(label string, got, limit float64) {
		if limit > 0 {
			c.labels = append(c.labels, label)
			c.groups[0].values = append(c.groups[0].values, min(got/limit, c.xmax))
		}
	}
	if s := r.Stdout; s != nil && s.Throttled != nil {
		frac("stdout forwarded (1 MB/s)", s.Throttled.ForwardedBps, float64(s.Throttled.StdioBps))
		frac("stdout container writer", s.Throttled.ContainerBps, float64(s.Throttled.StdioBps))
	}
	if f := r.Rootfs; f != nil {
		frac("rootfs write, dd bs=1M direct", f.WriteBps, float64(f.Limits.WriteBps))
		frac("rootfs read, dd bs=1M direct", f.ReadBps, float64(f.Limits.ReadBps))
		frac("rootfs write, dd bs=4k direct", f.WriteIOPS, float64(f.Limits.WriteIOPS))
		frac("rootfs read, dd bs=4k direct", f.ReadIOPS, float64(f.Limits.ReadIOPS))
		for _, p := range f.Phases {
			if !p.Direct && p.Device != nil {
				frac("rootfs "+strings.TrimPrefix(p.Name, "write 1MiB ")+" (not throttled on v1)", p.Bps, float64(f.Limits.WriteBps))
			}
		}
	}
	if b := r.Burst; b != nil {
		for _, p := range b.Phases {
			frac("after the start burst: "+p.Name, p.Sustained, p.Limit)
		}
	}
	return c, len(c.labels) > 0
}
