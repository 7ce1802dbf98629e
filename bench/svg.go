//go:build linux

package bench

import (
	"fmt"
	"html"
	"strings"
)

// bar is one bar of a chart; Band is a tolerance drawn around Ref (0:
// none).
type bar struct {
	Label string
	Value float64
	Text  string // printed after the bar
}

// chart is a horizontal bar chart written by hand as SVG: no plotting
// dependency for two charts.
type chart struct {
	Title string
	Unit  string
	Max   float64 // right end of the axis
	Ref   float64 // a reference line (0: none)
	Band  float64 // half-width of a shaded band around Ref (0: none)
	Bars  []bar
}

const (
	chartLabelW = 330
	chartPlotW  = 420
	chartTextW  = 190
	chartRowH   = 26
	chartTop    = 40
)

func (c chart) svg() []byte {
	w := chartLabelW + chartPlotW + chartTextW
	h := chartTop + len(c.Bars)*chartRowH + 40
	x := func(v float64) float64 { return chartLabelW + min(max(v, 0), c.Max)/c.Max*chartPlotW }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="10" y="22" font-size="14" font-weight="bold">%s</text>`+"\n", html.EscapeString(c.Title))
	bottom := chartTop + len(c.Bars)*chartRowH
	if c.Band > 0 {
		fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="#d8f0d8"/>`+"\n",
			x(c.Ref-c.Band), chartTop-4, x(c.Ref+c.Band)-x(c.Ref-c.Band), bottom-chartTop+4)
	}
	for i, br := range c.Bars {
		y := chartTop + i*chartRowH
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", chartLabelW-8, y+15, html.EscapeString(br.Label))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="#4a7ab5"/>`+"\n", chartLabelW, y+3, x(br.Value)-chartLabelW, chartRowH-8)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", chartLabelW+chartPlotW+8, y+15, html.EscapeString(br.Text))
	}
	if c.Ref > 0 {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#c03030" stroke-width="1.5"/>`+"\n", x(c.Ref), chartTop-6, x(c.Ref), bottom)
	}
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", chartLabelW, bottom, chartLabelW+chartPlotW, bottom)
	for i := 0; i <= 4; i++ {
		v := c.Max * float64(i) / 4
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x(v), bottom+16, trimFloat(v))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", chartLabelW+chartPlotW/2, bottom+32, html.EscapeString(c.Unit))
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.2f", v)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}

// AccuracyChart plots each throttled figure as a fraction of its limit,
// with the ±5% band; nil when the results have none.
func (r *Results) AccuracyChart() []byte {
	c := chart{Title: "Throttle accuracy: measured / limit (band: ±5%)", Unit: "measured / configured limit", Max: 1.25, Ref: 1, Band: TargetRootfsTol}
	frac := func(label string, got, limit float64, unit string) {
		if limit > 0 {
			c.Bars = append(c.Bars, bar{label, got / limit, fmt.Sprintf("%.3f (%.0f %s)", got/limit, got, unit)})
		}
	}
	if s := r.Stdout; s != nil && s.Throttled != nil {
		frac("stdout forwarded (1 MB/s)", s.Throttled.ForwardedBps, float64(s.Throttled.StdioBps), "B/s")
		frac("stdout container writer", s.Throttled.ContainerBps, float64(s.Throttled.StdioBps), "B/s")
	}
	if f := r.Rootfs; f != nil {
		frac("rootfs write, dd bs=1M direct", f.WriteBps, float64(f.Limits.WriteBps), "B/s")
		frac("rootfs read, dd bs=1M direct", f.ReadBps, float64(f.Limits.ReadBps), "B/s")
		frac("rootfs write, dd bs=4k direct", f.WriteIOPS, float64(f.Limits.WriteIOPS), "IOPS")
		frac("rootfs read, dd bs=4k direct", f.ReadIOPS, float64(f.Limits.ReadIOPS), "IOPS")
		for _, p := range f.Phases {
			if !p.Direct && p.Device != nil {
				frac("rootfs "+strings.TrimPrefix(p.Name, "write 1MiB ")+" (not throttled on v1)", p.Bps, float64(f.Limits.WriteBps), "B/s")
			}
		}
	}
	if len(c.Bars) == 0 {
		return nil
	}
	return c.svg()
}

// StartChart plots the start latency medians and p90s; nil without a start
// bench.
func (r *Results) StartChart() []byte {
	s := r.Start
	if s == nil || len(s.Series) == 0 {
		return nil
	}
	c := chart{Title: fmt.Sprintf("Pod start latency, ctr run --rm ... true (n=%d)", s.N), Unit: "seconds"}
	for _, se := range s.Series {
		c.Max = max(c.Max, se.P90)
		c.Bars = append(c.Bars, bar{se.Name + " median", se.Median, fmtSec(se.Median)}, bar{se.Name + " p90", se.P90, fmtSec(se.P90)})
	}
	c.Max = niceCeil(c.Max)
	return c.svg()
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := 1.0
	for p*10 < v {
		p *= 10
	}
	for p > v {
		p /= 10
	}
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}
