package tray

import (
	"context"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/localapi/control"
)

// menuItem is an entry of menuUI: what a panel would show of it.
type menuItem struct {
	title            string
	enabled, visible bool
	onClick          func()
}

func (i *menuItem) SetTitle(s string) { i.title = s }
func (i *menuItem) Enable()           { i.enabled = true }
func (i *menuItem) Disable()          { i.enabled = false }
func (i *menuItem) Hide()             { i.visible = false }
func (i *menuItem) Show()             { i.visible = true }

// menuUI is a Toolkit that keeps the menu in memory; the real icon over
// D-Bus is driven in internal/e2e.
type menuUI struct{ items []*menuItem }

func (u *menuUI) Run(onReady func()) { onReady() }
func (u *menuUI) Quit()              {}
func (u *menuUI) SetTooltip(string)  {}
func (u *menuUI) AddSeparator()      {}
func (u *menuUI) AddItem(title string, onClick func()) Item {
	it := &menuItem{title: title, enabled: true, visible: true, onClick: onClick}
	u.items = append(u.items, it)
	return it
}

// visible lists the titles a panel shows.
func (u *menuUI) visible() []string {
	var out []string
	for _, it := range u.items {
		if it.visible {
			out = append(out, it.title)
		}
	}
	return out
}

func (u *menuUI) find(title string) *menuItem {
	for _, it := range u.items {
		if it.title == title && it.visible {
			return it
		}
	}
	return nil
}

// ringingStatus answers Status with the calls set on it and OpenChat with
// a chat link; the rest of Control is unused here.
type ringingStatus struct {
	Control
	calls []control.RingingCall
}

func (c *ringingStatus) Status(context.Context) (*control.Status, error) {
	return &control.Status{ServerName: "test", FederationMode: "off", Discovery: "off", Ringing: c.calls}, nil
}

func (c *ringingStatus) OpenChat(context.Context) (string, error) { return "http://chat.invalid/", nil }

type openedURLs struct {
	Desktop
	urls []string
}

func (d *openedURLs) OpenURL(u string) error { d.urls = append(d.urls, u); return nil }

// TestTrayShowsRingingCall: while a call rings for the owner the menu has
// a line "Anna is calling" (the caller's user ID without a display name,
// a count of the others when several ring), whose click opens the chat
// client; with none ringing the line is hidden.
func TestTrayShowsRingingCall(t *testing.T) {
	ui, ctl, desk := &menuUI{}, &ringingStatus{}, &openedURLs{}
	tr := New(ui, ctl, desk, "127.0.0.1:1")
	tr.refresh = time.Hour // update is called by hand below
	tr.Run()
	has := func(title string) bool { return ui.find(title) != nil }
	for _, it := range ui.items {
		if it.title == noCallTitle && it.visible {
			t.Fatalf("the ringing line shows with no call: %q", ui.visible())
		}
	}

	ctl.calls = []control.RingingCall{{Caller: "@anna:a.local", DisplayName: "Anna", RoomID: "!r:a.local", CallID: "c1"}}
	tr.update()
	line := ui.find("Anna is calling")
	if line == nil || !line.enabled {
		t.Fatalf("a call rings, menu %q", ui.visible())
	}
	if ui.items[1] != line {
		t.Errorf("the ringing line is not right under the status line: %q", ui.visible())
	}
	line.onClick()
	if len(desk.urls) != 1 || desk.urls[0] != "http://chat.invalid/" {
		t.Fatalf("clicking the call opened %q, want the chat client", desk.urls)
	}

	ctl.calls = append(ctl.calls, control.RingingCall{Caller: "@bob:b.local", RoomID: "!s:b.local", CallID: "c2"},
		control.RingingCall{Caller: "@carol:c.local", RoomID: "!t:c.local", CallID: "c3"})
	tr.update()
	if !has("Anna is calling · 2 more calls") {
		t.Errorf("three calls ring, menu %q", ui.visible())
	}
	ctl.calls = ctl.calls[1:2]
	tr.update()
	if !has("@bob:b.local is calling") {
		t.Errorf("a caller without a display name, menu %q", ui.visible())
	}

	ctl.calls = nil
	tr.update()
	if line.visible || line.enabled {
		t.Fatalf("no call rings, yet the line shows: %+v in %q", line, ui.visible())
	}
}
