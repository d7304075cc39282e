package main

import (
	"path/filepath"
	"strings"

	"howett.net/plist"
)

// Opening Hearth.app (issue 13). macOS starts a bundle's executable with
// no arguments (releases before 10.9 add -psn_<serial>), so that is what
// a double-click means, and no terminal is there to read a message:
// Hearth is made to run at login as a LaunchAgent (written on first open,
// as 'hearth service install' does, and rewritten when the app was moved),
// started, and the console opened in the browser; a build with the
// menu-bar item (made on a Mac, packaging/README.md) then shows it. What
// goes wrong is said in a dialog. The decisions are here; what acts on
// macOS is in app_darwin.go.

// appBundle is the .app that exe is the executable of, when args are what
// macOS passes on open; "" otherwise (a person typing the path with a
// subcommand gets the command line as usual).
func appBundle(exe string, args []string) string {
	for _, a := range args {
		if !strings.HasPrefix(a, "-psn_") {
			return ""
		}
	}
	macOS := filepath.Dir(exe)
	contents := filepath.Dir(macOS)
	app := filepath.Dir(contents)
	if filepath.Base(macOS) != "MacOS" || filepath.Base(contents) != "Contents" || !strings.HasSuffix(app, ".app") {
		return ""
	}
	return app
}

// appUnsettled says why the app cannot be started at login from where it
// is, or "": run from the disk image (a read-only volume, gone once
// ejected) or translocated (Gatekeeper runs a quarantined app that was
// never moved from a random read-only path, new on each open).
func appUnsettled(app string, readOnly func(dir string) bool) string {
	switch {
	case strings.Contains(app, "/AppTranslocation/"):
		return "Hearth was opened where it was downloaded. Drag Hearth into the Applications folder, then open it from there: it is started at each login from where it is."
	case strings.HasPrefix(app, "/Volumes/") && readOnly(filepath.Dir(app)):
		return "Hearth was opened from its disk image. Drag Hearth into the Applications folder, then open it from there: it is started at each login from where it is."
	}
	return ""
}

// agentStep is what opening the app does about the LaunchAgent.
type agentStep int

const (
	agentInstall   agentStep = iota // none yet: write and load it
	agentStart                      // it runs this app: start it
	agentReinstall                  // it runs a binary that is gone (the app moved): rewrite it
	agentKeep                       // it runs another hearth that exists: start that one
)

// launchAgentStep decides from the LaunchAgent's contents (nil if there
// is none) and this executable's real path.
func launchAgentStep(agent []byte, exe string, exists func(string) bool) agentStep {
	if agent == nil {
		return agentInstall
	}
	var a struct {
		ProgramArguments []string `plist:"ProgramArguments"`
	}
	if _, err := plist.Unmarshal(agent, &a); err != nil || len(a.ProgramArguments) == 0 {
		return agentReinstall
	}
	switch prog := a.ProgramArguments[0]; {
	case prog == exe:
		return agentStart
	case !exists(prog):
		return agentReinstall
	}
	return agentKeep
}
