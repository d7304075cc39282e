package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// newRunEnv describes this invocation for the report's header.
func (b *bench) newRunEnv(now time.Time) runEnv {
	return runEnv{
		Date:    now.UTC().Format("2006-01-02 15:04 UTC"),
		Commit:  gitDescribe(),
		Machine: b.machineLine(),
		Go:      runtime.Version(),
		Command: commandLine(os.Args[1:]),
		Runs:    b.cfg.runs,
		Quick:   b.cfg.quick,
		Note:    b.cfg.note,
	}
}

// gitDescribe names the code measured: the working tree's commit, with
// -dirty when it has changes the commit does not hold.
func gitDescribe() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if s := strings.TrimSpace(string(out)); err == nil && s != "" {
		return s
	}
	return "unknown"
}

// commandLine is how the bench was started, quoted so it can be pasted
// back into a shell (`go run` builds under a temp name, so the program is
// named by its package directory).
func commandLine(args []string) string {
	parts := []string{"go run ./cmd/hearth-bench"}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"$`\\;&|<>*?()[]{}#~") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// loadNum is the 1-minute load average, or -1 if it cannot be read.
func loadNum() float64 {
	v, err := strconv.ParseFloat(loadAvg(), 64)
	if err != nil {
		return -1
	}
	return v
}

// takeProbe reads the load and times 100 write+fsync pairs and 20
// commit-sized writes in dir, the disk the daemons' data dirs are on,
// right before a run.
func takeProbe(dir string) probe {
	p := probe{LoadStart: loadNum()}
	p50, p99, err := fsyncProbe(dir, 100)
	if err != nil {
		p.FsyncErr = err.Error()
		return p
	}
	p.FsyncP50, p.FsyncP99 = msF(p50), msF(p99)
	pages, err := pagesProbe(filepath.Join(dir, "pages-probe"), 20)
	if err != nil {
		p.FsyncErr = err.Error()
		return p
	}
	p.PagesP50 = msF(pages)
	return p
}
