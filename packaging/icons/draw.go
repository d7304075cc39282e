package icons

import (
	"image"
	"image/color"
	"math"
)

// Render draws the Hearth icon at size×size pixels: a warm flame over two
// crossed logs on a dark rounded square. It is drawn from shapes rather
// than scaled from one bitmap so the small tray sizes stay crisp, and each
// pixel is the average of ss×ss samples (anti-aliasing). The result is a
// pure function of size, so the committed PNGs can be checked against it.
func Render(size int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, size, size))
	ss := 4
	if size <= 32 {
		ss = 8
	}
	n := float64(ss * ss)
	for py := 0; py < size; py++ {
		for px := 0; px < size; px++ {
			var r, g, b, a float64
			for sy := 0; sy < ss; sy++ {
				for sx := 0; sx < ss; sx++ {
					x := (float64(px) + (float64(sx)+0.5)/float64(ss)) / float64(size)
					y := (float64(py) + (float64(sy)+0.5)/float64(ss)) / float64(size)
					c, ok := sample(x, y)
					if !ok {
						continue
					}
					// Premultiplied sums: transparent samples add nothing.
					r += c[0]
					g += c[1]
					b += c[2]
					a++
				}
			}
			if a == 0 {
				continue
			}
			img.SetNRGBA(px, py, color.NRGBA{
				R: uint8(math.Round(r / a * 255)), G: uint8(math.Round(g / a * 255)),
				B: uint8(math.Round(b / a * 255)), A: uint8(math.Round(a / n * 255)),
			})
		}
	}
	return img
}

// sample is the colour at (x, y) in the unit square, or false outside the
// rounded square.
func sample(x, y float64) ([3]float64, bool) {
	const inset, radius = 0.03, 0.2
	if !inRoundedSquare(x, y, inset, radius) {
		return [3]float64{}, false
	}
	// Background: a dark warm brown, lighter at the top.
	bg := mix(rgb(0x4a, 0x24, 0x18), rgb(0x26, 0x10, 0x0c), y)
	// A soft glow behind the flame.
	if d := math.Hypot(x-0.5, y-0.6); d < 0.42 {
		bg = mix(rgb(0x8a, 0x3a, 0x14), bg, d/0.42)
	}
	c := bg
	if inLogs(x, y) {
		c = mix(rgb(0xb4, 0x6a, 0x2c), rgb(0x7a, 0x3e, 0x18), (y-0.74)/0.14)
	}
	if inFlame(x, y, 0.5, 0.72, 0.23, 0.1) {
		c = mix(rgb(0xff, 0x9a, 0x1f), rgb(0xf0, 0x4e, 0x14), (y-0.1)/0.62)
	}
	if inFlame(x, y, 0.5, 0.73, 0.12, 0.36) {
		c = mix(rgb(0xff, 0xf1, 0xa8), rgb(0xff, 0xc8, 0x3a), (y-0.36)/0.37)
	}
	return c, true
}

func inRoundedSquare(x, y, inset, r float64) bool {
	lo, hi := inset+r, 1-inset-r
	dx := math.Max(math.Max(lo-x, x-hi), 0)
	dy := math.Max(math.Max(lo-y, y-hi), 0)
	if x < inset || x > 1-inset || y < inset || y > 1-inset {
		return false
	}
	return dx*dx+dy*dy <= r*r
}

// inFlame is a teardrop: a circle of radius r whose centre sits r above
// base, drawn up into a tip at height tip that leans a little to the right,
// like a flame in a draught.
func inFlame(x, y, cx, base, r, tip float64) bool {
	cy := base - r
	if math.Hypot(x-cx, y-cy) <= r {
		return true
	}
	if y < tip || y > cy {
		return false
	}
	t := (y - tip) / (cy - tip) // 0 at the tip, 1 at the circle's centre
	w := r * math.Pow(t, 1.4)
	lean := 0.06 * (1 - t) * math.Sin(t*math.Pi)
	return math.Abs(x-cx-lean) <= w
}

// inLogs is two crossed logs under the flame.
func inLogs(x, y float64) bool {
	return inBar(x, y, 0.24, 0.86, 0.76, 0.74, 0.045) || inBar(x, y, 0.24, 0.74, 0.76, 0.86, 0.045)
}

// inBar is a capsule from (x1, y1) to (x2, y2) of half-width w.
func inBar(x, y, x1, y1, x2, y2, w float64) bool {
	dx, dy := x2-x1, y2-y1
	t := ((x-x1)*dx + (y-y1)*dy) / (dx*dx + dy*dy)
	t = math.Max(0, math.Min(1, t))
	return math.Hypot(x-(x1+t*dx), y-(y1+t*dy)) <= w
}

func rgb(r, g, b uint8) [3]float64 {
	return [3]float64{float64(r) / 255, float64(g) / 255, float64(b) / 255}
}

// mix is a at t=0 and b at t=1.
func mix(a, b [3]float64, t float64) [3]float64 {
	t = math.Max(0, math.Min(1, t))
	return [3]float64{a[0] + (b[0]-a[0])*t, a[1] + (b[1]-a[1])*t, a[2] + (b[2]-a[2])*t}
}
