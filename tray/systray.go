// fyne.io/systray draws the macOS menu-bar item through Cocoa, which
// needs cgo; a macOS build without cgo (the cross-built release) has no
// Systray, and 'hearth tray' says so (cmd/hearth/tray_none.go).

//go:build !darwin || cgo

package tray

import "fyne.io/systray"

// Systray is the Toolkit on fyne.io/systray: the maintained fork of the
// getlantern API, pure Go on Linux (a StatusNotifierItem with a dbusmenu
// over D-Bus, no GTK) and on Windows.
type Systray struct{}

func (Systray) Run(onReady func()) { systray.Run(onReady, nil) }
func (Systray) Quit()              { systray.Quit() }
func (Systray) SetTooltip(s string) {
	systray.SetTooltip(s)
	systray.SetTitle(s)
}
func (Systray) AddSeparator() { systray.AddSeparator() }

func (Systray) AddItem(title string, onClick func()) Item {
	m := systray.AddMenuItem(title, "")
	if onClick != nil {
		go func() {
			for range m.ClickedCh {
				onClick()
			}
		}()
	}
	return m
}
