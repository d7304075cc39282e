package push

import (
	"slices"
	"strings"
	"testing"

	"github.com/hearth-chat/hearth/internal/room"
)

// @room (m.mentions.room) highlights only when the sender has the power
// level notifications.room asks (sender_notification_permission, read by
// mautrix through PowerLevelfulRoom); a display-name mention highlights
// through contains_display_name with the name from the member event.
func TestEvaluateRoomMentionAndDisplayName(t *testing.T) {
	e := openEnv(t, t.TempDir())
	defer e.db.Close()
	s := New(e.db, e.rooms, Options{})
	s.Start()
	defer s.Stop()
	owner, bob, carol := user("owner"), user("bob"), user("carol")
	roomID := e.publicRoom(t, owner, []string{bob, carol})
	counts := func(u string) Count {
		t.Helper()
		e.settle(t, s)
		c, err := s.Counts(u, roomID, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c.All
	}
	atRoom := map[string]any{"msgtype": "m.text", "body": "everyone!", "m.mentions": map[string]any{"room": true}}
	e.say(t, bob, roomID, "1", atRoom) // power 0: a plain message for carol
	if c := counts(carol); c.Notifications != 1 || c.Highlights != 0 {
		t.Fatalf("@room from a user without the power: %+v, want 1 notification, no highlight", c)
	}
	e.say(t, owner, roomID, "2", atRoom) // power 100
	if c := counts(carol); c.Notifications != 2 || c.Highlights != 1 {
		t.Fatalf("@room from the owner: %+v, want a highlight", c)
	}
	// publicRoom gives bob the display name "Dr bobington", which the
	// user-name rule (whole word "bob") does not match.
	if c := counts(bob); c.Highlights != 1 {
		t.Fatalf("bob before: %+v", c)
	}
	e.say(t, carol, roomID, "3", text("thanks, Dr bobington!"))
	if c := counts(bob); c.Highlights != 2 {
		t.Fatalf("display name mention: %+v, want a highlight", c)
	}
}

// /sync counts events the evaluator has not stored yet by evaluating them
// on the spot (Service.Live); those counts must equal what the log gives
// once the evaluator has run.
func TestLiveCountsMatchLog(t *testing.T) {
	e := openEnv(t, t.TempDir())
	defer e.db.Close()
	owner, bob, carol := user("owner"), user("bob"), user("carol")
	s := New(e.db, e.rooms, Options{})
	s.Start()
	defer s.Stop()
	roomID := e.publicRoom(t, owner, []string{bob, carol})
	e.say(t, bob, roomID, "1", text("plain"))
	e.say(t, bob, roomID, "2", map[string]any{"msgtype": "m.notice", "body": "bot"})
	e.say(t, bob, roomID, "3", map[string]any{"msgtype": "m.text", "body": "hey",
		"m.mentions": map[string]any{"user_ids": []string{carol}}})
	e.say(t, owner, roomID, "4", text("from the owner"))
	pos, _ := e.rooms.Pos()

	// A service whose evaluator has stored nothing: everything is live.
	stalled := New(e.db, e.rooms, Options{})
	stalled.running.Store(true)
	live, err := stalled.Live(t.Context(), carol, pos)
	if err != nil || live.Evaluated != 0 || len(live.Hits[roomID]) != 3 {
		t.Fatalf("live: %+v, %v; want 3 hits from position 0", live, err)
	}
	fromLive, err := stalled.Counts(carol, roomID, live)
	if err != nil {
		t.Fatal(err)
	}
	if rooms, _ := stalled.RoomsNotified(carol, 0, live); len(rooms) != 1 || rooms[0] != roomID {
		t.Fatalf("rooms notified: %v", rooms)
	}

	e.settle(t, s)
	fromLog, err := s.Counts(carol, roomID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fromLive.All != fromLog.All || fromLog.All != (Count{Notifications: 3, Highlights: 1}) {
		t.Fatalf("live counts %+v, log counts %+v; want both 3 notifications, 1 highlight", fromLive.All, fromLog.All)
	}
}

// Evaluate's results are sorted by user ID, also when a big room's
// recipients are shared among goroutines, and a /sync finds its user's
// result among the published ones (resultFor): every member of a room
// past parallelRecipients gets the message's notification, the sender none.
func TestEvaluateResultsFoundPerUser(t *testing.T) {
	e := openEnv(t, t.TempDir())
	defer e.db.Close()
	owner := user("owner")
	members := names("m", parallelRecipients+20)
	roomID := e.publicRoom(t, owner, members)
	e.say(t, owner, roomID, "1", text("hello all"))
	pos, _ := e.rooms.Pos()
	s := New(e.db, e.rooms, Options{}) // not started: results only as published below
	s.running.Store(true)
	var batch []evaluated
	if err := e.rooms.PushEventsAfter(pos-1, pos, func(pe *room.PushEvent) error {
		res, err := s.eval.Evaluate(pe)
		batch = append(batch, evaluated{pe, res})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	byUser := func(a, b Result) int { return strings.Compare(a.UserID, b.UserID) }
	if len(batch) != 1 || len(batch[0].results) != len(members) || !slices.IsSortedFunc(batch[0].results, byUser) {
		t.Fatalf("results %+v; want one event's %d, sorted by user", batch, len(members))
	}
	s.publish(batch, pos)
	for _, u := range append(members, owner) {
		want := 1
		if u == owner {
			want = 0
		}
		live, err := s.Live(t.Context(), u, pos)
		if err != nil || len(live.Hits[roomID]) != want {
			t.Fatalf("%s: %d hits, %v; want %d", u, len(live.Hits[roomID]), err, want)
		}
	}
}
