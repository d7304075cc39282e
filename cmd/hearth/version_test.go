package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hearth-chat/hearth/daemon"
)

// TestVersion: `hearth version` prints the version, commit and build date
// make dist stamped, and names an unstamped binary a development build.
func TestVersion(t *testing.T) {
	defer func(v, c, d string) { daemon.Version, daemon.Commit, daemon.BuildDate = v, c, d }(daemon.Version, daemon.Commit, daemon.BuildDate)

	var out bytes.Buffer
	if code := run([]string{"version"}, &out, &out); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if first := strings.SplitN(out.String(), "\n", 2)[0]; !strings.HasPrefix(first, "hearth dev (development build") {
		t.Errorf("unstamped build: %q", first)
	}

	daemon.Version, daemon.Commit, daemon.BuildDate = "0.4.0-2-gabc1234", "abc1234def", "2026-12-06T10:00:00Z"
	out.Reset()
	if code := run([]string{"version"}, &out, &out); code != 0 {
		t.Fatalf("exit %d", code)
	}
	lines := strings.Split(out.String(), "\n")
	want := []string{"hearth 0.4.0-2-gabc1234", "commit abc1234def", "built 2026-12-06T10:00:00Z"}
	if len(lines) < 3 || strings.Join(lines[:3], "\n") != strings.Join(want, "\n") {
		t.Errorf("stamped build:\n%s\nwant first lines:\n%s", out.String(), strings.Join(want, "\n"))
	}
}
