package main

import (
	"path/filepath"
	"slices"
	"testing"
)

// TestTrayStartKeepsLogs: the daemon the tray starts runs detached, its
// standard error going nowhere, so it is given the data dir's hearth.log
// (absolute: the tray's working directory is no one's business) unless
// log_file is configured, which the daemon then reads itself.
func TestTrayStartKeepsLogs(t *testing.T) {
	dir := t.TempDir()
	args := []string{"--data-dir", dir}
	cfg, code := loadConfig("tray", args, t.Output(), nil)
	if code != 0 {
		t.Fatalf("config: exit %d", code)
	}
	got, err := trayDaemonArgs("/bin/hearth", cfg, args)
	want := []string{"/bin/hearth", "run", "--data-dir", dir, "--log-file", filepath.Join(dir, "hearth.log")}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("Start Hearth runs %q (%v), want %q", got, err, want)
	}

	cfg.LogFile = filepath.Join(t.TempDir(), "mine.log")
	got, _ = trayDaemonArgs("/bin/hearth", cfg, args)
	if want := []string{"/bin/hearth", "run", "--data-dir", dir}; !slices.Equal(got, want) {
		t.Fatalf("with log_file configured Start Hearth runs %q, want %q", got, want)
	}
}
