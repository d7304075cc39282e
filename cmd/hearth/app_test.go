package main

import (
	"testing"

	"github.com/hearth-chat/hearth/packaging"
)

// TestAppBundleOpen: macOS opens Hearth.app by running its executable
// with no arguments (or -psn_… before 10.9); that, and only that, is the
// app being opened: the same binary typed with a subcommand, or installed
// outside a bundle, is the command line.
func TestAppBundleOpen(t *testing.T) {
	const exe = "/Applications/Hearth.app/Contents/MacOS/hearth"
	for _, c := range []struct {
		exe  string
		args []string
		want string
	}{
		{exe, nil, "/Applications/Hearth.app"},
		{exe, []string{"-psn_0_1234567"}, "/Applications/Hearth.app"},
		{exe, []string{"run"}, ""},
		{exe, []string{"tray"}, ""},
		{"/usr/local/bin/hearth", nil, ""},
		{"/Users/anna/Contents/MacOS/hearth", nil, ""},
	} {
		if got := appBundle(c.exe, c.args); got != c.want {
			t.Errorf("appBundle(%q, %q) = %q, want %q", c.exe, c.args, got, c.want)
		}
	}
}

// TestAppUnsettled: an app run from its disk image or translocated by
// Gatekeeper would write a LaunchAgent pointing at a path that is gone at
// the next login, so it asks to be moved to Applications first.
func TestAppUnsettled(t *testing.T) {
	ro := func(string) bool { return true }
	rw := func(string) bool { return false }
	if appUnsettled("/Applications/Hearth.app", ro) != "" || appUnsettled("/Users/anna/Applications/Hearth.app", ro) != "" {
		t.Error("an app in Applications is asked to move")
	}
	if appUnsettled("/Volumes/Hearth/Hearth.app", ro) == "" {
		t.Error("an app opened from the disk image is not asked to move")
	}
	if appUnsettled("/Volumes/External/Hearth.app", rw) != "" {
		t.Error("an app on a writable external volume is asked to move")
	}
	if appUnsettled("/private/var/folders/x1/T/AppTranslocation/0A1B/d/Hearth.app", rw) == "" {
		t.Error("a translocated app is not asked to move")
	}
}

// TestAppLaunchAgentStep: opening the app writes the LaunchAgent the
// first time, starts it after, rewrites it when the app it names is gone
// (moved to another folder), and leaves alone one that runs another
// hearth that exists (a person's own 'hearth service install').
func TestAppLaunchAgentStep(t *testing.T) {
	const exe = "/Applications/Hearth.app/Contents/MacOS/hearth"
	agent := func(bin string) []byte {
		b, err := packaging.LaunchAgent(packaging.Service{Args: []string{bin, "run", "--data-dir", "/Users/anna/Library/Application Support/Hearth"},
			LogFile: "/Users/anna/Library/Application Support/Hearth/hearth.log"})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	exists := func(p string) bool { return p == exe || p == "/opt/homebrew/bin/hearth" }
	for _, c := range []struct {
		name  string
		agent []byte
		want  agentStep
	}{
		{"none yet", nil, agentInstall},
		{"this app", agent(exe), agentStart},
		{"the app moved", agent("/Users/anna/Downloads/Hearth.app/Contents/MacOS/hearth"), agentReinstall},
		{"another hearth", agent("/opt/homebrew/bin/hearth"), agentKeep},
		{"damaged", []byte("<plist><dict><key>Label"), agentReinstall},
	} {
		if got := launchAgentStep(c.agent, exe, exists); got != c.want {
			t.Errorf("%s: step %d, want %d", c.name, got, c.want)
		}
	}
}
