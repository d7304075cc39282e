package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMedianOddAndEven(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{7}, 7},
		{[]float64{3, 1, 2}, 2},
		{[]float64{5, 1, 9, 3, 7}, 5},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{10, 20}, 15},
	} {
		if got := median(append([]float64{}, c.in...)); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

// ms2 is a row of one run with two figures, as the latency sections make.
func ms2(p50, p99 float64, text string) []row {
	return []row{{metric: "latency: p50 / p99", target: "p50 ≤ 3 ms", value: text,
		nums: figs(fig("p50", p50, "ms"), fig("p99", p99, "ms"))}}
}

// Each figure of a two-figure row is aggregated on its own: here the p99
// median comes from a different run than the p50 median, and the detail
// is the text of the run whose p50 is the median.
func TestTwoFigureRowOddRuns(t *testing.T) {
	rows := mergeRuns([][]row{ms2(1.5, 30.5, "first"), ms2(3.5, 10.5, "second"), ms2(2.5, 50.5, "third")})
	if len(rows) != 1 || len(rows[0].Runs) != 3 {
		t.Fatalf("merged %+v", rows)
	}
	figures, detail, failed := rows[0].cells()
	if want := "p50 2.50 ms (1.50–3.50) / p99 30.5 ms (10.5–50.5)"; figures != want {
		t.Errorf("figures %q, want %q", figures, want)
	}
	if detail != "run 3: third" || failed {
		t.Errorf("detail %q failed %v, want the third run's text and no failure", detail, failed)
	}
}

func TestEvenRunsMedianIsMeanOfMiddle(t *testing.T) {
	rate := func(v float64, text string) []row {
		return []row{{metric: "sends", value: text, nums: figs(fig("", v, "events/s"))}}
	}
	rows := mergeRuns([][]row{rate(100, "a"), rate(400, "b"), rate(200, "c"), rate(300, "d")})
	figures, detail, _ := rows[0].cells()
	if figures != "250 events/s (100–400)" {
		t.Errorf("figures %q", figures)
	}
	// 200 and 300 are equally near 250: the first of them is shown.
	if detail != "run 3: c" {
		t.Errorf("detail %q, want run 3's text", detail)
	}
}

// A failed run is named with its error, the row counts as failed, and the
// figures come from the runs that measured; a run that stopped before the
// row says so too.
func TestErrorRows(t *testing.T) {
	failedRun := []row{errRow("latency: p50 / p99", "p50 ≤ 3 ms", os.ErrDeadlineExceeded)}
	rows := mergeRuns([][]row{ms2(1, 10, "one"), failedRun, ms2(3, 30, "three"), nil})
	figures, detail, failed := rows[0].cells()
	if !failed {
		t.Error("a row with a failed run is not marked failed")
	}
	if figures != "p50 2 ms (1–3) / p99 20 ms (10–30)" {
		t.Errorf("figures %q, want the two measured runs' median and range", figures)
	}
	for _, want := range []string{"run 2 of 4: ERROR: i/o timeout", "run 4 of 4: no row", "run 1: one"} {
		if !strings.Contains(detail, want) {
			t.Errorf("detail %q lacks %q", detail, want)
		}
	}

	allFailed := mergeRuns([][]row{failedRun, failedRun})
	figures, detail, failed = allFailed[0].cells()
	if figures != "—" || !failed || !strings.Contains(detail, "run 1 of 2: ERROR") || !strings.Contains(detail, "run 2 of 2: ERROR") {
		t.Errorf("all runs failed: figures %q detail %q failed %v", figures, detail, failed)
	}
}

// A run marked failed that still measured (a missed target, a lost
// message) counts in the figures and is named in the detail.
func TestFailedRunWithFigures(t *testing.T) {
	missed := ms2(80, 90, "80 ms / 90 ms; PROBLEM: 1 missing")
	missed[0].failed = true
	rows := mergeRuns([][]row{ms2(2, 20, "fine"), missed, ms2(4, 40, "fine too")})
	figures, detail, failed := rows[0].cells()
	if figures != "p50 4 ms (2–80) / p99 40 ms (20–90)" || !failed {
		t.Errorf("figures %q failed %v", figures, failed)
	}
	if !strings.Contains(detail, "run 2 of 3: 80 ms / 90 ms; PROBLEM: 1 missing") || !strings.Contains(detail, "run 3: fine too") {
		t.Errorf("detail %q", detail)
	}
	alone := mergeRuns([][]row{missed})
	if figures, detail, failed := alone[0].cells(); figures != "p50 80 ms / p99 90 ms" || !failed || strings.Count(detail, "PROBLEM") != 1 {
		t.Errorf("one failed run with figures: figures %q detail %q failed %v", figures, detail, failed)
	}
}

// Rows without figures (skipped, text only) are shown as they are, once
// when the runs agree.
func TestTextRows(t *testing.T) {
	skipped := []row{{metric: "idle, netns", value: "skipped: no netns"}}
	rows := mergeRuns([][]row{skipped, skipped, skipped})
	figures, detail, failed := rows[0].cells()
	if figures != "—" || detail != "skipped: no netns" || failed {
		t.Errorf("figures %q detail %q failed %v", figures, detail, failed)
	}
}

func TestSpreadOneRunHasNoRange(t *testing.T) {
	rows := mergeRuns([][]row{ms2(1.25, 9.5, "only")})
	figures, detail, _ := rows[0].cells()
	if figures != "p50 1.25 ms / p99 9.50 ms" || detail != "only" {
		t.Errorf("figures %q detail %q", figures, detail)
	}
}

const prose0 = "# Performance\n\nHow figures are produced — prose with ünïcode | pipes.\n\n"
const prose1 = "\n\n## Findings\n\nThe record of what was found, kept byte for byte.\n| not | a | generated | table |"

func section(name, date, text string, v float64) sectionResult {
	return sectionResult{
		Name:   name,
		Env:    runEnv{Date: date, Commit: "c-" + date, Machine: "2 CPUs", Go: "go1.x", Command: "go run ./cmd/hearth-bench", Runs: 1},
		Probes: []probe{{LoadStart: 0.5, LoadEnd: 0.7, FsyncP50: 0.1, FsyncP99: 0.2, Took: 3}},
		Rows:   mergeRuns([][]row{{{metric: name + " metric", value: text, target: "t", nums: figs(fig("", v, "ms"))}}}),
	}
}

// Writing twice with different sections keeps the untouched sections'
// rows (with their own date), replaces the rerun ones, and never changes
// the prose outside the markers.
func TestWriteReportKeepsOtherSections(t *testing.T) {
	dir := t.TempDir()
	doc := filepath.Join(dir, "performance.md")
	if err := os.WriteFile(doc, []byte(prose0+benchBegin+"\nseed\n"+benchEnd+prose1), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeReport(doc, []sectionResult{section("sync", "day1", "sync-first", 5.5), section("send", "day1", "send-first", 1.5)}); err != nil {
		t.Fatal(err)
	}
	if err := writeReport(doc, []sectionResult{section("throughput", "day2", "tput-second", 3000), section("sync", "day2", "sync-second", 4.5)}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	i, j := strings.Index(text, benchBegin), strings.Index(text, benchEnd)
	if i < 0 || j < i {
		t.Fatalf("markers lost:\n%s", text)
	}
	if text[:i] != prose0 || text[j+len(benchEnd):] != prose1 {
		t.Errorf("prose outside the markers changed:\n%s", text)
	}
	block := text[i:j]
	for _, want := range []string{"send-first", "| send metric | 1.50 ms |", "tput-second", "sync-second", "day1", "day2", "c-day1"} {
		if !strings.Contains(block, want) {
			t.Errorf("block lacks %q:\n%s", want, block)
		}
	}
	if strings.Contains(block, "sync-first") || strings.Contains(block, "seed") {
		t.Errorf("block keeps replaced rows:\n%s", block)
	}
	// Sections in the bench's order, whatever order they were written in.
	if s, tp, sy := strings.Index(block, "**send**"), strings.Index(block, "**throughput**"), strings.Index(block, "**sync**"); !(s >= 0 && s < tp && tp < sy) {
		t.Errorf("sections out of order (send %d, throughput %d, sync %d):\n%s", s, tp, sy, block)
	}

	var stored benchFile
	raw, err := os.ReadFile(benchJSONPath(doc))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &stored); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range stored.Sections {
		names = append(names, s.Name+"@"+s.Env.Date)
	}
	if got := strings.Join(names, ","); got != "send@day1,throughput@day2,sync@day2" {
		t.Errorf("bench.json holds %s", got)
	}
}

// A doc without the markers is refused and left as it was.
func TestWriteReportNeedsMarkers(t *testing.T) {
	dir := t.TempDir()
	doc := filepath.Join(dir, "performance.md")
	for _, body := range []string{prose0, prose0 + benchEnd + benchBegin, prose0 + benchBegin + benchEnd + benchBegin} {
		if err := os.WriteFile(doc, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := writeReport(doc, []sectionResult{section("send", "d", "x", 1)}); err == nil {
			t.Errorf("no error for %q", body)
		}
		if data, _ := os.ReadFile(doc); string(data) != body {
			t.Errorf("doc changed to %q", data)
		}
		if _, err := os.Stat(benchJSONPath(doc)); err == nil {
			t.Errorf("bench.json written for %q", body)
		}
	}
}

// A caption gives the commit-sized probe when the runs have one, and
// leaves it out for runs recorded before it existed.
func TestProbeLinePagesProbe(t *testing.T) {
	with := probeLine([]probe{{LoadStart: 0.5, LoadEnd: 0.7, FsyncP50: 0.1, FsyncP99: 0.2, PagesP50: 4, Took: 3},
		{LoadStart: 0.5, LoadEnd: 0.7, FsyncP50: 0.1, FsyncP99: 0.2, PagesP50: 6, Took: 3}})
	if !strings.Contains(with, "64 scattered 4 KiB writes+fsync p50 ") || !strings.Contains(with, "5 ms (4–6)") {
		t.Errorf("caption with the pages probe: %q", with)
	}
	if without := probeLine([]probe{{LoadStart: 0.5, LoadEnd: 0.7, FsyncP50: 0.1, FsyncP99: 0.2, Took: 3}}); strings.Contains(without, "scattered") {
		t.Errorf("caption of a run without the pages probe: %q", without)
	}
}
