package main

import (
	"io"
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

// TestTrayStartDaemonFlag: --start-daemon is the tray's own flag (an
// installer's autostart entry runs `hearth tray --start-daemon`): it
// parses, and the daemon the tray starts is run without it, in each way
// Go's flag package spells it, so `hearth run` does not refuse an unknown
// flag.
func TestTrayStartDaemonFlag(t *testing.T) {
	dir := t.TempDir()
	for _, spelling := range []string{"--start-daemon", "-start-daemon", "--start-daemon=true", "-start-daemon=false"} {
		args := []string{spelling, "--data-dir", dir}
		cfg, code := loadConfig("tray", args, t.Output(), trayFlags(new(bool)))
		if code != 0 {
			t.Fatalf("hearth tray %s: exit %d", spelling, code)
		}
		got, err := trayDaemonArgs("/bin/hearth", cfg, args)
		want := []string{"/bin/hearth", "run", "--data-dir", dir, "--log-file", filepath.Join(dir, "hearth.log")}
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("with %s Start Hearth runs %q, want %q", spelling, got, want)
		}
	}
	// A value after "--" is no flag of ours.
	if got := runFlags([]string{"--data-dir", "d", "--", "--start-daemon"}); !slices.Equal(got, []string{"--data-dir", "d", "--", "--start-daemon"}) {
		t.Errorf("after --: %q", got)
	}
	if code := run([]string{"run", "--start-daemon", "--data-dir", dir}, io.Discard, io.Discard); code != 2 {
		t.Fatalf("hearth run --start-daemon: exit %d, want 2 (a usage error: the flag is the tray's alone)", code)
	}
}
