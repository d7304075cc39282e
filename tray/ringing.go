package tray

import (
	"fmt"

	"github.com/hearth-chat/hearth/localapi/control"
)

// A call ringing for the owner (issue 12) shows as a line near the top of
// the menu, "Anna is calling"; a click opens the chat client, where the
// call is answered. The daemon's status lists the ringing calls (push
// follows each m.call.invite until it is answered, hung up, rejected or
// its lifetime passes), so the tray keeps nothing of its own: the line
// follows the status at each refresh. Calls in encrypted rooms are not
// seen by the server; the owner's chat client rings for those.

// hider is an Item the toolkit can hide (fyne.io/systray's can); with
// another toolkit the line stays, disabled, saying no call rings.
type hider interface {
	Hide()
	Show()
}

const noCallTitle = "No call ringing"

// addRinging adds the ringing line, hidden until a call rings.
func (t *Tray) addRinging() {
	t.ringing = t.ui.AddItem(noCallTitle, t.openChat)
	t.showRinging(nil)
}

// showRinging sets the line from the status's ringing calls.
func (t *Tray) showRinging(calls []control.RingingCall) {
	title := ringingTitle(calls)
	h, canHide := t.ringing.(hider)
	if title == "" {
		t.ringing.SetTitle(noCallTitle)
		t.ringing.Disable()
		if canHide {
			h.Hide()
		}
		return
	}
	t.ringing.SetTitle(title)
	t.ringing.Enable()
	if canHide {
		h.Show()
	}
}

// ringingTitle is the line for the calls ringing now, oldest first:
// "Anna is calling", "Anna is calling · 1 more call"; empty for none.
func ringingTitle(calls []control.RingingCall) string {
	switch len(calls) {
	case 0:
		return ""
	case 1:
		return calls[0].CallerName() + " is calling"
	case 2:
		return calls[0].CallerName() + " is calling · 1 more call"
	}
	return fmt.Sprintf("%s is calling · %d more calls", calls[0].CallerName(), len(calls)-1)
}
