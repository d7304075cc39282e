package main

import (
	"fmt"
	"io"
	"strings"
)

// renderBlock writes the report in Markdown: first the invocations the
// sections' figures came from (sections kept from earlier runs keep their
// own), then for each section a caption with its load and fsync probe and
// a table of its rows. pad aligns the columns for a terminal; the docs
// are written unpadded so a regenerated row changes one line.
func renderBlock(w io.Writer, secs []sectionResult, padded bool) {
	var envs []runEnv
	label := func(e runEnv) string {
		for i, x := range envs {
			if x == e {
				return string(rune('A' + i%26))
			}
		}
		envs = append(envs, e)
		return string(rune('A' + (len(envs)-1)%26))
	}
	for _, s := range secs {
		label(s.Env)
	}
	for _, e := range envs {
		line := fmt.Sprintf("- **%s**: %s, commit %s; %s; %s; -runs %d; `%s`",
			label(e), e.Date, e.Commit, e.Machine, e.Go, e.Runs, e.Command)
		if e.Quick {
			line += "; -quick: shortened windows and counts, not comparable with a full run"
		}
		if e.Note != "" {
			line += "; " + e.Note
		}
		fmt.Fprintln(w, line)
	}
	for _, s := range secs {
		runs := len(s.Probes)
		how := fmt.Sprintf("%d runs", runs)
		if runs == 1 {
			how = "1 run"
		}
		if s.Once != "" {
			how += ", " + s.Once
		}
		fmt.Fprintf(w, "\n**%s** (invocation %s, %s): %s\n\n", s.Name, label(s.Env), how, probeLine(s.Probes))
		head := "median (min–max)"
		if runs == 1 {
			head = "figures"
		}
		rows := [][]string{{"metric", head, "detail (errors, then the run nearest the median)", "target"}}
		for _, r := range s.Rows {
			figures, detail, failed := r.cells()
			if failed {
				figures = "FAILED " + figures
			}
			rows = append(rows, []string{r.Metric, figures, detail, r.Target})
		}
		mdTable(w, rows, padded)
	}
}

// mdTable writes rows (the first is the header) as a Markdown table.
func mdTable(w io.Writer, rows [][]string, padded bool) {
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			r[i] = strings.ReplaceAll(strings.ReplaceAll(c, "|", `\|`), "\n", " ")
			if padded {
				widths[i] = max(widths[i], width(r[i]))
			}
		}
	}
	line := func(cells []string) {
		for i, c := range cells {
			fmt.Fprintf(w, "| %s ", pad(c, widths[i]))
		}
		fmt.Fprintln(w, "|")
	}
	line(rows[0])
	for i := range widths {
		fmt.Fprintf(w, "|%s", strings.Repeat("-", max(3, widths[i]+2)))
	}
	fmt.Fprintln(w, "|")
	for _, r := range rows[1:] {
		line(r)
	}
}

func pad(s string, n int) string { return s + strings.Repeat(" ", max(0, n-width(s))) }
