//go:build darwin && !cgo

package main

import "github.com/hearth-chat/hearth/tray"

// trayToolkit: a macOS build without cgo has no menu-bar item (tray.go's
// errNoMenuBar says why and where the build with it is described).
func trayToolkit() (tray.Toolkit, error) { return nil, errNoMenuBar }
