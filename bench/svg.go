package bench

import (
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"
)

// Series is one line of a chart.
type Series struct {
	Name   string
	Points [][2]float64 // (x, y), drawn in order
}

// Chart is a line chart with optional log axes, rendered as SVG.
type Chart struct {
	Title, XLabel, YLabel string
	XLog, YLog            bool
	Series                []Series
}

var palette = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
	"#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39"}

// dashes marks the system: Trireme solid, Redis dashed, etcd dotted.
func dashFor(name string) string {
	switch {
	case strings.HasPrefix(name, "redis"):
		return "6,4"
	case strings.HasPrefix(name, "etcd"):
		return "2,3"
	}
	return ""
}

// axis maps data values to pixels.
type axis struct {
	lo, hi   float64
	log      bool
	from, to float64 // pixels
}

func (a axis) pos(v float64) float64 {
	f := func(x float64) float64 {
		if a.log {
			return math.Log10(math.Max(x, 1e-12))
		}
		return x
	}
	lo, hi := f(a.lo), f(a.hi)
	if hi == lo {
		hi = lo + 1
	}
	return a.from + (f(v)-lo)/(hi-lo)*(a.to-a.from)
}

// ticks returns tick values: powers and 2x/5x steps on a log axis, about
// six round steps on a linear one.
func (a axis) ticks() []float64 {
	var out []float64
	if a.log {
		for e := math.Floor(math.Log10(a.lo)); e <= math.Ceil(math.Log10(a.hi)); e++ {
			for _, m := range []float64{1, 2, 5} {
				v := m * math.Pow(10, e)
				if v >= a.lo*0.999 && v <= a.hi*1.001 {
					out = append(out, v)
				}
			}
		}
		return out
	}
	span := a.hi - a.lo
	step := math.Pow(10, math.Floor(math.Log10(span/5)))
	for _, m := range []float64{1, 2, 5, 10} {
		if span/(step*m) <= 7 {
			step *= m
			break
		}
	}
	for v := math.Ceil(a.lo/step) * step; v <= a.hi+step*1e-9; v += step {
		out = append(out, v)
	}
	return out
}

func fmtTick(v float64) string {
	unit, d := "", 1.0
	switch {
	case v >= 1e6:
		unit, d = "M", 1e6
	case v >= 1e3:
		unit, d = "k", 1e3
	}
	s := strconv.FormatFloat(v/d, 'f', -1, 64)
	if len(s) > 5 {
		s = strconv.FormatFloat(v/d, 'g', 3, 64)
	}
	return s + unit
}

// SVG renders the chart.
func (c Chart) SVG() string {
	const W, H = 860.0, 480.0
	const left, right, top, bottom = 80.0, 250.0, 40.0, 60.0
	xlo, xhi, ylo, yhi := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range c.Series {
		for _, p := range s.Points {
			if (c.XLog && p[0] <= 0) || (c.YLog && p[1] <= 0) {
				continue
			}
			xlo, xhi = math.Min(xlo, p[0]), math.Max(xhi, p[0])
			ylo, yhi = math.Min(ylo, p[1]), math.Max(yhi, p[1])
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(c.Title))
	if math.IsInf(xlo, 0) {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f">no data</text></svg>`+"\n", W/2, H/2)
		return b.String()
	}
	if c.XLog {
		xlo, xhi = xlo/1.3, xhi*1.3
	} else {
		xlo, xhi = 0, xhi*1.05
	}
	if c.YLog {
		ylo, yhi = ylo/1.5, yhi*1.5
	} else {
		ylo, yhi = 0, yhi*1.1
	}
	xa := axis{lo: xlo, hi: xhi, log: c.XLog, from: left, to: W - right}
	ya := axis{lo: ylo, hi: yhi, log: c.YLog, from: H - bottom, to: top}
	fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#444"/>`+"\n",
		left, top, W-right-left, H-bottom-top)
	for _, v := range xa.ticks() {
		x := xa.pos(v)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#ddd"/>`, x, top, x, H-bottom)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n", x, H-bottom+16, fmtTick(v))
	}
	for _, v := range ya.ticks() {
		y := ya.pos(v)
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#ddd"/>`, left, y, W-right, y)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y+4, fmtTick(v))
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle">%s</text>`+"\n", (left+W-right)/2, H-18, html.EscapeString(c.XLabel))
	fmt.Fprintf(&b, `<text transform="translate(20 %.0f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", (top+H-bottom)/2, html.EscapeString(c.YLabel))
	for i, s := range c.Series {
		col := palette[i%len(palette)]
		var pts []string
		for _, p := range s.Points {
			if (c.XLog && p[0] <= 0) || (c.YLog && p[1] <= 0) {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", xa.pos(p[0]), ya.pos(p[1])))
		}
		dash := ""
		if d := dashFor(s.Name); d != "" {
			dash = fmt.Sprintf(` stroke-dasharray="%s"`, d)
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`+"\n", col, dash, strings.Join(pts, " "))
		for _, p := range pts {
			xy := strings.Split(p, ",")
			fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`, xy[0], xy[1], col)
		}
		ly := top + 10 + float64(i)*18
		fmt.Fprintf(&b, "\n"+`<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="%s" stroke-width="2"%s/>`, W-right+12, ly, W-right+36, ly, col, dash)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f">%s</text>`+"\n", W-right+42, ly+4, html.EscapeString(s.Name))
	}
	b.WriteString("</svg>\n")
	return b.String()
}
