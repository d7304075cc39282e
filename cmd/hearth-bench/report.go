package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// The report: every selected section runs -runs times, each run with
// fresh daemons; a row is shown as the median and min–max of each of its
// figures over the runs, beside the free-text detail of the run nearest
// the median. The types below are also what docs/bench.json stores
// (report_write.go), so a later run of some sections can regenerate the
// whole block of docs/performance.md.

// runRow is one row as one run produced it.
type runRow struct {
	Value  string `json:"value"`
	Failed bool   `json:"failed,omitempty"`
	Nums   []num  `json:"nums,omitempty"`
}

// benchRow is one metric over the runs of its section. Runs[i] is nil
// when run i did not produce the row (it stopped early).
type benchRow struct {
	Metric string    `json:"metric"`
	Target string    `json:"target"`
	Runs   []*runRow `json:"runs"`
}

// probe is what the machine looked like around one run: the 1-minute load
// average at its start and end (runnable tasks; above the core count other
// work competes with the daemon and the bench) and a 4 KiB write+fsync
// probe right before it (the floor under every durable commit), then 64
// scattered 4 KiB writes and one fsync (about one commit of the writer
// under load, pagesProbe). Load is -1 where /proc/loadavg could not be
// read; fsync figures are 0 with FsyncErr set if a probe failed (files
// from before the pages probe have 0 there, and captions leave it out).
type probe struct {
	LoadStart float64 `json:"load_start"`
	LoadEnd   float64 `json:"load_end"`
	FsyncP50  float64 `json:"fsync_p50_ms"`
	FsyncP99  float64 `json:"fsync_p99_ms"`
	PagesP50  float64 `json:"pages64_fsync_p50_ms,omitempty"`
	FsyncErr  string  `json:"fsync_err,omitempty"`
	Took      float64 `json:"took_s"` // the run's wall time, seconds
}

// runEnv says where and how a section's figures were taken.
type runEnv struct {
	Date    string `json:"date"`    // UTC, minutes
	Commit  string `json:"commit"`  // git describe --always --dirty, or "unknown"
	Machine string `json:"machine"` // machineLine
	Go      string `json:"go"`      // the bench's Go version
	Command string `json:"command"` // the exact command line
	Runs    int    `json:"runs"`    // -runs
	Quick   bool   `json:"quick,omitempty"`
	Note    string `json:"note,omitempty"` // -note
}

// sectionResult is one section of one invocation.
type sectionResult struct {
	Name   string     `json:"name"`
	Env    runEnv     `json:"env"`
	Once   string     `json:"once,omitempty"` // why the section ran once whatever -runs said
	Probes []probe    `json:"probes"`         // one per run
	Rows   []benchRow `json:"rows"`
}

// mergeRuns lines up the rows of a section's runs by metric, in the order
// they first appear.
func mergeRuns(runs [][]row) []benchRow {
	var out []benchRow
	at := map[string]int{}
	for i, rows := range runs {
		for _, r := range rows {
			k, ok := at[r.metric]
			if !ok {
				k = len(out)
				at[r.metric] = k
				out = append(out, benchRow{Metric: r.metric, Target: r.target, Runs: make([]*runRow, len(runs))})
			}
			out[k].Runs[i] = &runRow{Value: r.value, Failed: r.failed, Nums: r.nums}
		}
	}
	return out
}

// spread is the median and range of one figure over the runs.
type spread struct {
	label, unit   string
	med, min, max float64
	n             int // runs that gave it
}

// median of vs (sorted in place): the middle value, or the mean of the
// two middle ones for an even count.
func median(vs []float64) float64 {
	slices.Sort(vs)
	n := len(vs)
	if n%2 == 1 {
		return vs[n/2]
	}
	return (vs[n/2-1] + vs[n/2]) / 2
}

// figures aggregates each figure of a row over the runs that measured it;
// a figure is matched by index, label and unit. A run marked failed that
// still measured (a missed target, a message lost on the way) counts: its
// failure is named in the detail. An error row has no figures.
func (r benchRow) figures() []spread {
	var shape []num
	for _, rr := range r.Runs {
		if rr != nil && len(rr.Nums) > len(shape) {
			shape = rr.Nums
		}
	}
	var out []spread
	for i, f := range shape {
		var vs []float64
		for _, rr := range r.Runs {
			if rr != nil && i < len(rr.Nums) && rr.Nums[i].Label == f.Label && rr.Nums[i].Unit == f.Unit {
				vs = append(vs, rr.Nums[i].V)
			}
		}
		out = append(out, spreadOf(vs, f.Label, f.Unit))
	}
	return out
}

// medianRun is the index of the measured run whose first figure is
// nearest that figure's median (the first such run on a tie), or -1.
func (r benchRow) medianRun(fs []spread) int {
	best, dist := -1, math.Inf(1)
	for i, rr := range r.Runs {
		if rr == nil || len(rr.Nums) == 0 || len(fs) == 0 || rr.Nums[0].Unit != fs[0].unit {
			continue
		}
		if d := math.Abs(rr.Nums[0].V - fs[0].med); d < dist {
			best, dist = i, d
		}
	}
	return best
}

// cells is the row as the report shows it: the figures' medians with
// their ranges, the detail (errors of any failed run first, then the
// median run's text), and whether any run failed or lacked the row.
func (r benchRow) cells() (figures, detail string, failed bool) {
	fs := r.figures()
	var parts []string
	for _, s := range fs {
		parts = append(parts, s.String())
	}
	figures = strings.Join(parts, " / ")
	if figures == "" {
		figures = "—"
	}
	var notes []string
	for i, rr := range r.Runs {
		switch {
		case rr == nil:
			notes = append(notes, fmt.Sprintf("run %d of %d: no row (stopped early)", i+1, len(r.Runs)))
			failed = true
		case rr.Failed && len(r.Runs) == 1:
			notes = append(notes, rr.Value)
			failed = true
		case rr.Failed:
			notes = append(notes, fmt.Sprintf("run %d of %d: %s", i+1, len(r.Runs), rr.Value))
			failed = true
		}
	}
	if m := r.medianRun(fs); m >= 0 && !r.Runs[m].Failed {
		text := r.Runs[m].Value
		if len(r.Runs) > 1 {
			text = fmt.Sprintf("run %d: %s", m+1, text)
		}
		notes = append(notes, text)
	} else if len(fs) == 0 {
		// No figures (skipped, text only): the text of each run, once
		// if they agree.
		var seen []string
		for _, rr := range r.Runs {
			if rr != nil && !rr.Failed && !slices.Contains(seen, rr.Value) {
				seen = append(seen, rr.Value)
			}
		}
		notes = append(notes, seen...)
	}
	return figures, strings.Join(notes, "; "), failed
}

// String is "p50 1.23 ms (1.20–1.31)", the range left out when one run
// gave the figure (runs that failed are named in the detail column).
func (s spread) String() string {
	v := fmtNum(s.med)
	if s.unit != "" {
		v += " " + s.unit
	}
	if s.label != "" {
		v = s.label + " " + v
	}
	if s.n > 1 {
		v += fmt.Sprintf(" (%s–%s)", fmtNum(s.min), fmtNum(s.max))
	}
	return v
}

// fmtNum prints whole numbers whole and others with three significant
// digits or so: 3384, 214, 14.0, 1.23, 0.05.
func fmtNum(v float64) string {
	a := math.Abs(v)
	switch {
	case v == math.Trunc(v) || a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// spreadOf is the median and range of vs.
func spreadOf(vs []float64, label, unit string) spread {
	s := spread{label: label, unit: unit, n: len(vs), min: slices.Min(vs), max: slices.Max(vs)}
	s.med = median(slices.Clone(vs))
	return s
}

// probeLine is a section's caption: the load at start and at end, and the
// fsync probe's p50 and p99, each as a median (min–max) over the runs.
func probeLine(ps []probe) string {
	over := func(get func(probe) float64, unit string) string {
		var vs []float64
		for _, p := range ps {
			if p.FsyncErr != "" && unit == "ms" {
				continue
			}
			if v := get(p); v >= 0 {
				vs = append(vs, v)
			}
		}
		if len(vs) == 0 {
			return "n/a"
		}
		return spreadOf(vs, "", unit).String()
	}
	fsync := fmt.Sprintf("4 KiB write+fsync p50 %s, p99 %s",
		over(func(p probe) float64 { return p.FsyncP50 }, "ms"), over(func(p probe) float64 { return p.FsyncP99 }, "ms"))
	if pages := over(func(p probe) float64 {
		if p.PagesP50 == 0 {
			return -1
		}
		return p.PagesP50
	}, "ms"); pages != "n/a" {
		fsync += "; 64 scattered 4 KiB writes+fsync p50 " + pages
	}
	for _, p := range ps {
		if p.FsyncErr != "" {
			fsync += "; fsync probe failed: " + p.FsyncErr
			break
		}
	}
	return fmt.Sprintf("1-min load %s at start → %s at end; %s; a run took %s",
		over(func(p probe) float64 { return p.LoadStart }, ""), over(func(p probe) float64 { return p.LoadEnd }, ""), fsync,
		over(func(p probe) float64 { return p.Took }, "s"))
}
