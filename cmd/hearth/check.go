package main

import (
	"fmt"
	"io"

	"github.com/hearth-chat/hearth/daemon"
)

// exitDataDir is the exit code for a data dir that cannot be used as it
// is: a damaged hearth.db, or one recorded under another server name.
const exitDataDir = 5

// checkCmd is 'hearth check': bbolt's page-by-page consistency check of
// the data dir's hearth.db, which a start does not run (it only checks
// the file's size against its meta page, to start fast).
func checkCmd(args []string, stdout, stderr io.Writer) int {
	cfg, code := loadConfig("check", args, stderr, nil)
	if code != 0 {
		return code
	}
	rep, err := daemon.CheckData(cfg)
	if err != nil {
		return fail(stderr, err)
	}
	if len(rep.Problems) == 0 {
		fmt.Fprintf(stdout, "%s: OK, %d pages of %d bytes in use (%.1f MiB), file %.1f MiB\n", rep.Path, rep.Pages,
			rep.PageSize, float64(rep.Pages*int64(rep.PageSize))/(1<<20), float64(rep.FileBytes)/(1<<20))
		return 0
	}
	fmt.Fprintf(stdout, "%s: %d problems found in %d pages:\n", rep.Path, len(rep.Problems), rep.Pages)
	for _, p := range rep.Problems {
		fmt.Fprintln(stdout, "  "+p)
	}
	fmt.Fprintln(stderr, "hearth: the data file is damaged: restore it from a backup (Hearth may fail on the damaged pages)")
	return exitDataDir
}
