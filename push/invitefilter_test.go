package push

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/room"
)

// TestIgnoredInviteNotifiesNobody: MSC4155 — an invite the invitee's
// invite permission config ignores is made, but must not count for push
// notifications (.m.rule.invite_for_me); one from a user the config does
// not name still notifies.
func TestIgnoredInviteNotifiesNobody(t *testing.T) {
	e := openEnv(t, t.TempDir())
	defer e.db.Close()
	s := New(e.db, e.rooms, Options{})
	s.Start()
	defer s.Stop()
	ctx := context.Background()
	owner, bob, dave := user("owner"), user("bob"), user("dave")
	accounts := account.New(e.db, testServer)
	if err := accounts.PutAccountData(ctx, "dave", "", account.InvitePermissionConfig,
		json.RawMessage(`{"ignored_users":["`+bob+`"]}`)); err != nil {
		t.Fatal(err)
	}
	invitedBy := func(inviter string) Count {
		t.Helper()
		roomID := e.publicRoom(t, inviter, nil)
		if _, err := e.rooms.ChangeMembership(ctx, room.MembershipRequest{Sender: inviter, RoomID: roomID, Target: dave, Membership: "invite"}); err != nil {
			t.Fatal(err)
		}
		e.settle(t, s)
		c, err := s.Counts(dave, roomID, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c.All
	}
	if c := invitedBy(owner); c.Notifications != 1 {
		t.Fatalf("an invite dave's config does not name: %+v, want a notification", c)
	}
	if c := invitedBy(bob); c.Notifications != 0 {
		t.Errorf("an invite dave's config ignores: %+v, want no notification", c)
	}
}
