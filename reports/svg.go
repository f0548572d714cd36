package reports

import (
	"fmt"
	"html"
	"math"
	"strings"

	"github.com/opsdrill/opsdrill/steps"
)

// Chart geometry, in SVG user units; the SVG scales to its container.
const (
	chartW    = 760
	chartH    = 240
	padLeft   = 56
	padRight  = 16
	padTop    = 16
	padBottom = 40
)

// palette is colour-blind safe (Okabe–Ito) and keeps 3:1 contrast on white.
var palette = []string{"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#56B4E9", "#E69F00"}

// renderChart draws series evidence as an inline SVG: axes with ticks, one
// polyline (or bars) per series, labelled vertical marks, and a legend. It
// is plain markup — no script, no external reference — so it shows with
// JavaScript off and prints.
func renderChart(ev steps.Evidence) string {
	type pt struct{ x, y float64 }
	var all [][]pt
	minX, maxX, minY, maxY := math.Inf(1), math.Inf(-1), 0.0, math.Inf(-1)
	for _, s := range ev.Series {
		var pts []pt
		for i := 0; i+1 < len(s.Points); i += 2 {
			p := pt{s.Points[i], s.Points[i+1]}
			if math.IsNaN(p.x) || math.IsNaN(p.y) || math.IsInf(p.x, 0) || math.IsInf(p.y, 0) {
				continue
			}
			pts = append(pts, p)
			minX, maxX = math.Min(minX, p.x), math.Max(maxX, p.x)
			minY, maxY = math.Min(minY, p.y), math.Max(maxY, p.y)
		}
		all = append(all, pts)
	}
	for _, m := range ev.Marks {
		minX, maxX = math.Min(minX, m.X), math.Max(maxX, m.X)
	}
	if math.IsInf(minX, 0) {
		return `<p class="muted">no data points</p>`
	}
	bars := ev.Chart == "bars"
	if bars {
		minX, maxX = minX-0.5, maxX+0.5
	}
	if maxX == minX {
		maxX = minX + 1
	}
	if maxY <= minY {
		maxY = minY + 1
	}
	maxY = niceCeil(maxY)
	plotW := float64(chartW - padLeft - padRight)
	plotH := float64(chartH - padTop - padBottom)
	sx := func(x float64) float64 { return padLeft + (x-minX)/(maxX-minX)*plotW }
	sy := func(y float64) float64 { return padTop + plotH - (y-minY)/(maxY-minY)*plotH }

	var b strings.Builder
	title := html.EscapeString(ev.Title)
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s">`, chartW, chartH, title)
	fmt.Fprintf(&b, `<title>%s</title>`, title)
	// Grid and y ticks.
	for i := 0; i <= 4; i++ {
		v := minY + (maxY-minY)*float64(i)/4
		y := sy(v)
		fmt.Fprintf(&b, `<line class="grid" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/>`, padLeft, chartW-padRight, y, y)
		fmt.Fprintf(&b, `<text class="tick" x="%d" y="%.1f" text-anchor="end">%s</text>`, padLeft-6, y+4, fmtNum(v))
	}
	// x ticks: every category for bars, six even steps otherwise.
	var xticks []float64
	if bars {
		seen := map[float64]bool{}
		for _, pts := range all {
			for _, p := range pts {
				if !seen[p.x] && len(seen) < 40 {
					seen[p.x] = true
					xticks = append(xticks, p.x)
				}
			}
		}
	} else {
		for i := 0; i <= 5; i++ {
			xticks = append(xticks, minX+(maxX-minX)*float64(i)/5)
		}
	}
	for _, v := range xticks {
		fmt.Fprintf(&b, `<text class="tick" x="%.1f" y="%d" text-anchor="middle">%s</text>`, sx(v), chartH-padBottom+16, fmtNum(v))
	}
	xunit, yunit := "", ""
	if len(ev.Series) > 0 {
		xunit, yunit = ev.Series[0].XUnit, ev.Series[0].YUnit
	}
	if xunit != "" {
		fmt.Fprintf(&b, `<text class="axis" x="%d" y="%d" text-anchor="end">%s</text>`, chartW-padRight, chartH-6, html.EscapeString(xunit))
	}
	if yunit != "" {
		fmt.Fprintf(&b, `<text class="axis" x="4" y="%d">%s</text>`, padTop-4, html.EscapeString(yunit))
	}
	fmt.Fprintf(&b, `<line class="axisline" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/>`, padLeft, chartW-padRight, sy(minY), sy(minY))
	// Data.
	for i, pts := range all {
		color := palette[i%len(palette)]
		if bars {
			w := plotW / (maxX - minX) * 0.7 / float64(max(1, len(all)))
			for _, p := range pts {
				x := sx(p.x) - plotW/(maxX-minX)*0.35 + float64(i)*w
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %s</title></rect>`,
					x, sy(p.y), w, sy(minY)-sy(p.y), color, fmtNum(p.x), fmtNum(p.y))
			}
			continue
		}
		var path strings.Builder
		for j, p := range pts {
			if j > 0 {
				path.WriteByte(' ')
			}
			fmt.Fprintf(&path, "%.1f,%.1f", sx(p.x), sy(p.y))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.8" points="%s"/>`, color, path.String())
		if len(pts) <= 60 {
			for _, p := range pts {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"><title>%s, %s</title></circle>`, sx(p.x), sy(p.y), color, fmtNum(p.x), fmtNum(p.y))
			}
		}
	}
	// Marks, with labels placed in the first row where they do not overlap
	// an earlier label (failover and DNS switch are often close).
	type span struct{ from, to float64 }
	var rows [][]span
	for _, m := range ev.Marks {
		x := sx(m.X)
		fmt.Fprintf(&b, `<line class="mark" x1="%.1f" x2="%.1f" y1="%d" y2="%.1f"/>`, x, x, padTop, sy(minY))
		w := 6.2*float64(len([]rune(m.Label))) + 8
		anchor, from := "start", x+4
		if x+w > chartW-padRight {
			anchor, from = "end", x-4-w
		}
		row := 0
		for ; row < len(rows); row++ {
			free := true
			for _, sp := range rows[row] {
				if from < sp.to && from+w > sp.from {
					free = false
					break
				}
			}
			if free {
				break
			}
		}
		if row == len(rows) {
			rows = append(rows, nil)
		}
		rows[row] = append(rows[row], span{from, from + w})
		tx := x + 4
		if anchor == "end" {
			tx = x - 4
		}
		fmt.Fprintf(&b, `<text class="marklabel" x="%.1f" y="%d" text-anchor="%s">%s</text>`, tx, padTop+12+13*row, anchor, html.EscapeString(m.Label))
	}
	b.WriteString(`</svg>`)
	// Legend as HTML so it wraps and reads well with a screen reader.
	if len(ev.Series) > 1 || (len(ev.Series) == 1 && ev.Series[0].Name != "") {
		b.WriteString(`<ul class="legend">`)
		for i, s := range ev.Series {
			fmt.Fprintf(&b, `<li><span class="swatch" style="background:%s"></span>%s</li>`, palette[i%len(palette)], html.EscapeString(s.Name))
		}
		b.WriteString(`</ul>`)
	}
	return b.String()
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return v
	}
	exp := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*exp >= v {
			return m * exp
		}
	}
	return 10 * exp
}

func fmtNum(v float64) string {
	switch {
	case v == math.Trunc(v) && math.Abs(v) < 1e12:
		return fmt.Sprintf("%d", int64(v))
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 1:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}
