package e2e

import (
	"strings"
	"testing"
)

// TestAccountAddCommand checks hearth account add: on a stopped daemon it
// creates a user who can then log in; while the daemon runs it refuses with
// exit code 3 and says why.
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

	// While the daemon runs the command refuses, clearly, with exit code 3.
	code, stdout, stderr = runHearth(t, "account", "add", "dave", "--password", Password("dave"),
		"--data-dir", d.DataDir, "--server-name", serverName)
	if code != 3 {
		t.Errorf("account add while running: exit %d, want 3\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	msg := strings.TrimSpace(stderr)
	if !strings.Contains(msg, "running") || strings.Count(msg, "\n") != 0 {
		t.Errorf("account add while running: stderr %q; want one line saying the daemon is running", stderr)
	}
	// And it did not create the user.
	if err := d.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	code, stdout, _ = runHearth(t, "account", "list", "--data-dir", d.DataDir, "--server-name", serverName)
	if code != 0 || !strings.Contains(stdout, UserID("carol").String()) || strings.Contains(stdout, UserID("dave").String()) {
		t.Errorf("account list after the refused add: exit %d, %q", code, stdout)
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
		args := append([]string{"run", "--data-dir", dir, "--client-listen", freeAddr(t), "--server-name", serverName}, tc.args...)
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
		"--registration", "open", "--server-name", serverName)
	if code == 0 || !strings.Contains(stderr, "in use") {
		t.Errorf("second hearth run on a data dir in use: exit %d, stderr %q", code, stderr)
	}
	if !d.Running() {
		t.Errorf("the first daemon died when a second one tried its data dir")
	}
}
