package e2e

import (
	"strings"
	"testing"
)

// TestAccountAddCommand checks hearth account add: on a stopped daemon it
// writes the data file directly, while the daemon runs it goes through the
// control API, and either way the user can log in; commands that need a
// running daemon say so with exit code 4.
func TestAccountAddCommand(t *testing.T) {
	t.Parallel()
	d := StartDaemon(t)
	// A stopped daemon's data dir, as a person would have it.
	if err := d.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	code, stdout, stderr := runHearth(t, "account", "add", "carol", "--password", Password("carol"),
		"--data-dir", d.DataDir, "--server-name", serverName)
	if code != 0 {
		t.Fatalf("account add on a stopped daemon: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, UserID("carol").String()) {
		t.Errorf("account add printed %q, want the user ID %s", stdout, UserID("carol"))
	}
	if strings.Contains(stdout, Password("carol")) {
		t.Errorf("account add echoed the password it was given: %q", stdout)
	}

	// The name is taken now.
	code, stdout, stderr = runHearth(t, "account", "add", "carol", "--password", "other",
		"--data-dir", d.DataDir, "--server-name", serverName)
	if code == 0 || strings.TrimSpace(stderr) == "" {
		t.Errorf("adding carol twice: exit %d, stdout %q, stderr %q; want a failure with a reason", code, stdout, stderr)
	}

	d.Start()
	carol := d.Login("carol")
	who, err := carol.Whoami(ctx(t))
	noErr(t, err, "whoami as carol")
	if who.UserID != UserID("carol") {
		t.Errorf("whoami: %s, want %s", who.UserID, UserID("carol"))
	}
	// The new account is an ordinary user: it can make a room and talk.
	roomID := PublicRoom(t, carol)
	SendText(t, carol, roomID, "hello from the command line")

	// While the daemon runs, the command goes through its control API and
	// the account works at once.
	code, stdout, stderr = runHearth(t, "account", "add", "dave", "--password", Password("dave"),
		"--data-dir", d.DataDir, "--server-name", serverName)
	if code != 0 || !strings.Contains(stdout, UserID("dave").String()) {
		t.Fatalf("account add while running: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if _, err := d.Login("dave").Whoami(ctx(t)); err != nil {
		t.Fatalf("dave, added through the control API, cannot log in: %v", err)
	}
	code, stdout, stderr = runHearth(t, "status", "--data-dir", d.DataDir)
	if code != 0 || !strings.Contains(stdout, "accounts     3") {
		t.Errorf("status while running: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if err := d.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	code, stdout, _ = runHearth(t, "account", "list", "--data-dir", d.DataDir, "--server-name", serverName)
	if code != 0 || !strings.Contains(stdout, UserID("dave").String()) {
		t.Errorf("account list after the stop: exit %d, %q", code, stdout)
	}
	// Commands that need the daemon say plainly that it is not running.
	code, _, stderr = runHearth(t, "status", "--data-dir", d.DataDir)
	if code != 4 || !strings.Contains(stderr, "not running") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Errorf("status of a stopped daemon: exit %d, stderr %q; want 4 and one line", code, stderr)
	}
}

// TestRunBadConfig checks that hearth run with a bad config value exits
// non-zero at once with a one-line reason, and that a second daemon on a
// data dir in use refuses to start.
func TestRunBadConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string // in the message
	}{
		{"registration", []string{"--registration", "bogus"}, "registration"},
		{"log level", []string{"--log-level", "loud"}, "log_level"},
		{"request size", []string{"--max-request-bytes", "lots"}, "max-request-bytes"},
	} {
		args := append([]string{"run", "--data-dir", dir, "--client-listen", freeAddr(t), "--server-name", serverName,
			"--federation", "off"}, tc.args...)
		code, stdout, stderr := runHearth(t, args...)
		msg := strings.TrimSpace(stderr)
		if code == 0 {
			t.Errorf("%s: hearth run exited 0", tc.name)
		}
		if msg == "" || strings.Contains(msg, "\n") || !strings.Contains(msg, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want one line naming %s", tc.name, code, stderr, tc.want)
		}
		if stdout != "" {
			t.Errorf("%s: printed %q to stdout", tc.name, stdout)
		}
	}

	// A second daemon on the same data dir fails instead of sharing the file.
	d := StartDaemon(t)
	code, _, stderr := runHearth(t, "run", "--data-dir", d.DataDir, "--client-listen", freeAddr(t),
		"--registration", "open", "--server-name", serverName, "--federation", "off")
	if code == 0 || !strings.Contains(stderr, "in use") {
		t.Errorf("second hearth run on a data dir in use: exit %d, stderr %q", code, stderr)
	}
	if !d.Running() {
		t.Errorf("the first daemon died when a second one tried its data dir")
	}
}
