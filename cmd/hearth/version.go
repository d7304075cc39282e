package main

import (
	"fmt"
	"io"
	"runtime"

	"github.com/hearth-chat/hearth/daemon"
)

// versionCmd prints what make dist stamped into the binary (cmd/hearth-dist
// sets daemon.Version, Commit and BuildDate with -ldflags -X): one
// "key value" line each, which the dist test and bug reports read. A
// binary built without them (go build, make run) says it is a development
// build rather than printing empty fields.
func versionCmd(stdout io.Writer) int {
	if daemon.Commit == "" {
		fmt.Fprintf(stdout, "hearth %s (development build: no release version, commit or build date stamped)\n", daemon.Version)
	} else {
		fmt.Fprintf(stdout, "hearth %s\ncommit %s\nbuilt %s\n", daemon.Version, daemon.Commit, daemon.BuildDate)
	}
	fmt.Fprintf(stdout, "go %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return 0
}
