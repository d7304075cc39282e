//go:build !darwin || cgo

package main

import "github.com/hearth-chat/hearth/tray"

// trayToolkit is fyne.io/systray: pure Go on Linux and Windows, cgo on
// macOS (tray_none.go is the macOS build without it).
func trayToolkit() (tray.Toolkit, error) { return tray.Systray{}, nil }
