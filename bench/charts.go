package bench

import (
	"bytes"
	"fmt"
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Chart is one figure of a report, drawn with gonum.org/v1/plot as SVG.
type Chart struct {
	// Name is the file-name suffix: the report writes <base>-<Name>.svg.
	Name  string
	Title string
	SVG   []byte
}

// palette colours the series of a chart, in order.
var palette = []color.Color{
	color.RGBA{R: 0x4a, G: 0x7a, B: 0xb5, A: 0xff}, // blue
	color.RGBA{R: 0xd9, G: 0x6c, B: 0x1e, A: 0xff}, // orange
	color.RGBA{R: 0x3a, G: 0x9a, B: 0x4a, A: 0xff}, // green
	color.RGBA{R: 0x9a, G: 0x4a, B: 0xa8, A: 0xff}, // purple
	color.RGBA{R: 0x80, G: 0x80, B: 0x80, A: 0xff}, // grey
}

func seriesColor(i int) color.Color { return palette[i%len(palette)] }

var (
	refColor  = color.RGBA{R: 0xc0, G: 0x30, B: 0x30, A: 0xff}
	bandColor = color.RGBA{R: 0xd8, G: 0xf0, B: 0xd8, A: 0xff}
)

// barGroup is one series of a bar chart: a value per label.
type barGroup struct {
	name   string
	values []float64
}

// barChart is a horizontal bar chart: one row per label, one bar per group
// in each row (or the groups stacked into one bar), with an optional
// reference line and tolerance band.
type barChart struct {
	title, unit string
	labels      []string
	groups      []barGroup
	stacked     bool
	ref, band   float64 // reference value (0: none) and half-width of its band
	xmax        float64 // right end of the axis (0: automatic, with room for the legend)
}

func (c barChart) render() ([]byte, error) {
	p := plot.New()
	p.Title.Text = c.title
	p.X.Label.Text = c.unit
	p.X.Min = 0
	p.X.Max = c.xmax
	if c.xmax <= 0 {
		var top float64
		for i := range c.labels {
			var sum float64
			for _, g := range c.groups {
				if c.stacked {
					sum += g.values[i]
				} else {
					sum = max(sum, g.values[i])
				}
			}
			top = max(top, sum)
		}
		p.X.Max = niceCeil(top * 1.35) // the legend sits in the right part
	}
	n := len(c.labels)
	perRow := len(c.groups)
	if c.stacked {
		perRow = 1
	}
	pitch := vg.Points(14*float64(max(perRow, 1)) + 14) // one row of bars and its gap
	barW := pitch * 0.7 / vg.Length(max(perRow, 1))
	if c.band > 0 && c.ref > 0 {
		lo, hi := c.ref-c.band, c.ref+c.band
		band, err := plotter.NewPolygon(plotter.XYs{{X: lo, Y: -0.5}, {X: hi, Y: -0.5}, {X: hi, Y: float64(n) - 0.5}, {X: lo, Y: float64(n) - 0.5}})
		if err != nil {
			return nil, fmt.Errorf("chart %q: %w", c.title, err)
		}
		band.Color, band.LineStyle.Width = bandColor, 0
		p.Add(band)
	}
	var below *plotter.BarChart
	for i, g := range c.groups {
		bars, err := plotter.NewBarChart(plotter.Values(g.values), barW)
		if err != nil {
			return nil, fmt.Errorf("chart %q: %w", c.title, err)
		}
		bars.Horizontal = true
		bars.Color = seriesColor(i)
		bars.LineStyle.Width = 0
		if c.stacked {
			if below != nil {
				bars.StackOn(below)
			}
			below = bars
		} else {
			// The first group on top, as the legend lists them.
			bars.Offset = barW*vg.Length(len(c.groups)-1-i) - barW*vg.Length(len(c.groups)-1)/2
		}
		p.Add(bars)
		if len(c.groups) > 1 {
			p.Legend.Add(g.name, bars)
		}
	}
	if c.ref > 0 {
		ref, err := plotter.NewLine(plotter.XYs{{X: c.ref, Y: -0.5}, {X: c.ref, Y: float64(n) - 0.5}})
		if err != nil {
			return nil, fmt.Errorf("chart %q: %w", c.title, err)
		}
		ref.Color, ref.Width = refColor, vg.Points(1.5)
		p.Add(ref)
	}
	p.NominalY(c.labels...)
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	h := max(pitch*vg.Length(n), vg.Points(14)*vg.Length(len(c.groups))) + vg.Points(80)
	return write(p, vg.Points(760), h)
}

// lineSeries is one line of a line chart.
type lineSeries struct {
	name   string
	xy     plotter.XYs
	dashed bool
}

// lineChart plots series against a common x axis.
type lineChart struct {
	title, xLabel, yLabel string
	series                []lineSeries
	logX                  bool
}

func (c lineChart) render() ([]byte, error) {
	p := plot.New()
	p.Title.Text = c.title
	p.X.Label.Text, p.Y.Label.Text = c.xLabel, c.yLabel
	if c.logX {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	for i, s := range c.series {
		xy := s.xy
		if c.logX { // a log axis cannot show x <= 0
			xy = make(plotter.XYs, 0, len(s.xy))
			for _, pt := range s.xy {
				if pt.X > 0 {
					xy = append(xy, pt)
				}
			}
		}
		if len(xy) == 0 {
			continue
		}
		l, err := plotter.NewLine(xy)
		if err != nil {
			return nil, fmt.Errorf("chart %q: %w", c.title, err)
		}
		l.Color, l.Width = seriesColor(i), vg.Points(1.5)
		if s.dashed {
			l.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		}
		p.Add(l)
		p.Legend.Add(s.name, l)
	}
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.Padding = vg.Points(4)
	p.Add(plotter.NewGrid())
	return write(p, vg.Points(760), vg.Points(420))
}

// chartFormat is the format charts are drawn in (gonum/plot's names).
var chartFormat = "svg"

func write(p *plot.Plot, w, h vg.Length) ([]byte, error) {
	wt, err := p.WriterTo(w, h, chartFormat)
	if err != nil {
		return nil, fmt.Errorf("chart %q: %w", p.Title.Text, err)
	}
	var b bytes.Buffer
	if _, err := wt.WriteTo(&b); err != nil {
		return nil, fmt.Errorf("chart %q: %w", p.Title.Text, err)
	}
	return b.Bytes(), nil
}

// cdf returns the empirical distribution of xs: for each sorted value, the
// fraction of values at or below it.
func cdf(xs []float64) plotter.XYs {
	s := sortedCopy(xs)
	out := make(plotter.XYs, len(s))
	for i, v := range s {
		out[i] = plotter.XY{X: v, Y: float64(i+1) / float64(len(s))}
	}
	return out
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v*(1-1e-12) {
			return m * p
		}
	}
	return 10 * p
}
