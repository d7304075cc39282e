// fyne.io/systray draws the macOS menu-bar item through Cocoa, which
// needs cgo; a macOS build without cgo (the cross-built release) has no
// Systray, and 'hearth tray' says so (cmd/hearth/tray_none.go).

//go:build !darwin || cgo

package tray

import (
	"runtime"

	"fyne.io/systray"

	"github.com/hearth-chat/hearth/packaging/icons"
)

// Systray is the Toolkit on fyne.io/systray: the maintained fork of the
// getlantern API, pure Go on Linux (a StatusNotifierItem with a dbusmenu
// over D-Bus, no GTK) and on Windows.
type Systray struct{}

func (Systray) Run(onReady func()) {
	systray.Run(func() {
		// Without an icon a panel shows an empty square.
		if b := trayIcon(); b != nil {
			systray.SetIcon(b)
		}
		onReady()
	}, nil)
}

// trayIcon is the icon in the form fyne.io/systray wants on this system:
// ICO bytes on Windows (LoadImage picks the size the taskbar needs), PNG
// elsewhere. On Linux the library sends one bitmap as the item's
// IconPixmap, so it gets the 64 px one, which panels scale down sharply
// and HiDPI panels still show crisp.
func trayIcon() []byte {
	if runtime.GOOS == "windows" {
		return icons.ICOFile()
	}
	b, err := icons.PNG(64)
	if err != nil {
		return nil
	}
	return b
}

func (Systray) Quit() { systray.Quit() }
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
