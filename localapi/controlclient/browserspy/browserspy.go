// Package browserspy is for tests of code that opens a browser through
// controlclient.OpenInBrowser (the CLI's 'hearth open', the tray): it puts
// a fake xdg-open first on PATH that records the argv and environment it
// was started with, so a test can show that no secret reached them.
package browserspy

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// Install puts the spy on PATH and points XDG_RUNTIME_DIR (where launch
// pages go) at a fresh directory, for the rest of t; it skips t where
// there is no xdg-open to stand in for (not Linux). The returned function
// waits for the spy's next run and returns its argv (one argument a
// line) and environment.
func Install(t *testing.T) (record func() (argv, env string)) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the spy is an xdg-open script")
	}
	bin, rec := t.TempDir(), t.TempDir()
	// Written to a temporary name and moved, so a reader never sees half.
	script := "#!/bin/sh\nprintf '%s\\n' \"$@\" > " + rec + "/argv.tmp\nenv > " + rec + "/env\nmv " + rec + "/argv.tmp " + rec + "/argv\n"
	if err := os.WriteFile(filepath.Join(bin, "xdg-open"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	return func() (string, string) {
		t.Helper()
		argvFile := filepath.Join(rec, "argv")
		defer os.Remove(argvFile) // the next call waits for the next run
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if argv, err := os.ReadFile(argvFile); err == nil {
				env, _ := os.ReadFile(filepath.Join(rec, "env"))
				return string(argv), string(env)
			}
		}
		t.Fatal("the browser was never started")
		return "", ""
	}
}
