package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRefusedStartInLogFile: a daemon with log_file set (a launchd or
// Run-key service, or one the tray started) has a standard error that
// goes nowhere, so the one line saying why it refused to start (here a
// damaged hearth.db, exit 5) is written to its log file too.
func TestRefusedStartInLogFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hearth.db"), bytes.Repeat([]byte{0xAB}, 100), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(dir, "hearth.log")
	var stdout, stderr bytes.Buffer
	code := run([]string{"run", "--data-dir", dir, "--key-store", "file", "--client-listen", "127.0.0.1:0",
		"--lan-discovery", "off", "--log-file", logFile}, &stdout, &stderr)
	if code != exitDataDir {
		t.Fatalf("exit %d, want %d; stderr %s", code, exitDataDir, stderr.String())
	}
	why := strings.TrimPrefix(strings.TrimSpace(stderr.String()), "hearth: ")
	logged, _ := os.ReadFile(logFile)
	if why == "" || !strings.Contains(string(logged), "damaged") {
		t.Fatalf("the refusal (%q) is not in the log file:\n%s", why, logged)
	}
}
