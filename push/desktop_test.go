package push

import (
	"encoding/json"
	"testing"

	"github.com/hearth-chat/hearth/internal/room"
)

// recordingDesktop stands in for the desktop's notification service in
// this unit test of who gets notified; internal/e2e delivers to a real
// D-Bus service.
type recordingDesktop chan [2]string

func (r recordingDesktop) Notify(title, body string) error {
	r <- [2]string{title, body}
	return nil
}

func TestDesktopFilter(t *testing.T) {
	const owner, guest = "@owner:x", "@guest:x"
	batch := []evaluated{{
		pe: &room.PushEvent{RoomName: "Kitchen", SenderName: "Bob",
			Event: room.ClientEvent{Type: "m.room.message", Sender: "@bob:x", Content: json.RawMessage(`{"body":"dinner?"}`)}},
		results: []Result{{UserID: owner, Notify: true}, {UserID: guest, Notify: true, Highlight: true}},
	}}
	for _, tc := range []struct {
		name, mode string
		active     bool
		want       bool
	}{
		{"on", "on", false, true},
		{"do not disturb", "off", false, false},
		{"highlights only, not a highlight", "highlights", false, false},
		{"a client is active", "on", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := make(recordingDesktop, 4)
			s := &Service{}
			s.SetDesktop(d, DesktopOptions{
				Owner:  func(u string) bool { return u == owner },
				Active: func(string) bool { return tc.active },
				Mode:   func() string { return tc.mode },
			})
			s.toDesktop(batch)
			if !tc.want {
				if len(d) != 0 {
					t.Fatalf("notified: %v", <-d)
				}
				return
			}
			if got := <-d; got != [2]string{"Bob in Kitchen", "dinner?"} {
				t.Fatalf("notification %q", got)
			}
		})
	}
}

// TestDesktopAsksOwnerOncePerUser: the daemon's Owner reads the accounts
// store, so a batch asks it once per recipient, not once per result.
func TestDesktopAsksOwnerOncePerUser(t *testing.T) {
	const owner, guest = "@owner:x", "@guest:x"
	var batch []evaluated
	for range 20 {
		batch = append(batch, evaluated{
			pe: &room.PushEvent{RoomName: "Kitchen", SenderName: "Bob",
				Event: room.ClientEvent{Type: "m.room.message", Sender: "@bob:x", Content: json.RawMessage(`{"body":"dinner?"}`)}},
			results: []Result{{UserID: owner, Notify: true}, {UserID: guest, Notify: true}},
		})
	}
	asked := map[string]int{}
	s := &Service{}
	s.SetDesktop(make(recordingDesktop, len(batch)), DesktopOptions{
		Owner:  func(u string) bool { asked[u]++; return u == owner },
		Active: func(string) bool { return false },
		Mode:   func() string { return "on" },
	})
	if _, notes := s.desktopNotes(batch); len(notes) != len(batch) {
		t.Fatalf("%d notifications, want %d (the owner's)", len(notes), len(batch))
	}
	if asked[owner] != 1 || asked[guest] != 1 {
		t.Fatalf("Owner asked %v, want once each", asked)
	}
}
