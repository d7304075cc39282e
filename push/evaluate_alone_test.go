package push

import (
	"context"
	"testing"

	"github.com/hearth-chat/hearth/internal/room"
)

// A message in a room whose only local member is its sender notifies
// nobody and is not converted for mautrix at all; an invite in such a
// room still reaches the local invitee.
func TestEvaluateSenderAloneSkipsTheEvent(t *testing.T) {
	e := openEnv(t, t.TempDir())
	defer e.db.Close()
	owner, bob := user("owner"), user("bob")
	roomID := e.publicRoom(t, owner, nil)
	from, _ := e.rooms.Pos()
	e.say(t, owner, roomID, "1", text("talking to myself"))
	if _, err := e.rooms.ChangeMembership(context.Background(), room.MembershipRequest{Sender: owner, Target: bob,
		RoomID: roomID, Membership: "invite"}); err != nil {
		t.Fatal(err)
	}
	to, _ := e.rooms.Pos()
	ev := NewEvaluator(NewRules(e.db), testServer)
	var got []string
	err := e.rooms.PushEventsAfter(from, to, func(pe *room.PushEvent) error {
		res, err := ev.Evaluate(pe)
		if err != nil {
			return err
		}
		switch pe.Event.Type {
		case "m.room.message":
			ev.mu.Lock()
			_, parsed := ev.parsed[pe.Event.EventID]
			ev.mu.Unlock()
			if len(res) != 0 || parsed {
				t.Errorf("sender alone: %d results, converted for mautrix %v; want none, not converted", len(res), parsed)
			}
		case "m.room.member":
			for _, r := range res {
				got = append(got, r.UserID)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != bob {
		t.Errorf("invite notified %v, want [%s]", got, bob)
	}
}
