//go:build darwin && !cgo

package main

import (
	"errors"

	"github.com/hearth-chat/hearth/tray"
)

// trayToolkit: a macOS build without cgo has no menu-bar item (errNoMenuBar
// says why and where the build with it is described).
func trayToolkit() (tray.Toolkit, error) { return nil, errNoMenuBar }

// errNoMenuBar is 'hearth tray' on a macOS build without cgo: the release
// binaries are cross-built from Linux, where fyne.io/systray's Cocoa code
// cannot be compiled, so they run the daemon and console but draw no
// menu-bar item (issue 13).
var errNoMenuBar = errors.New("this build of Hearth for macOS has no menu-bar item: " +
	"the menu-bar item needs cgo, and this binary was cross-built without it. " +
	"Hearth itself runs without it: opening Hearth.app (or 'hearth service install') starts it at login, " +
	"and 'hearth open' opens the console. For the menu-bar item, build Hearth on a Mac " +
	"as packaging/README.md (\"macOS\") describes")
