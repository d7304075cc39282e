package federation

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
)

// TestInviteFilterOverFederation: MSC4155 (Complement TestInviteFiltering
// "Can block a whole server", "Can allow a user from a blocked server").
// alice@hs1 blocks the servers matching "hs2.*": bob@hs2's invite is
// refused by hs1 over PUT /v2/invite with 403 M_INVITE_BLOCKED, which
// hs2 reports to its user, and neither server stores it. carol, an
// allowed user of hs2, and eve@hs3 get through; an ignored server's
// invite is countersigned and stored (the client API hides it). With the
// config removed bob's invite goes through.
func TestInviteFilterOverFederation(t *testing.T) {
	ctx := context.Background()
	n := newUKNet()
	hs1, hs2 := newUKServer(t, n, "hs1.test", false), newUKServer(t, n, "hs2.test", false)
	hs3 := newUKServer(t, n, "hs3.test", false)
	alice := hs1.addUser(t, "alice", "ADEV", false)
	bob, carol := hs2.addUser(t, "bob", "BDEV", false), hs2.addUser(t, "carol", "CDEV", false)
	eve := hs3.addUser(t, "eve", "EDEV", false)
	setConfig := func(config string) {
		t.Helper()
		if err := hs1.accounts.PutAccountData(ctx, "alice", "", account.InvitePermissionConfig, json.RawMessage(config)); err != nil {
			t.Fatal(err)
		}
	}
	invite := func(s *ukServer, inviter string) (string, error) {
		t.Helper()
		roomID, err := s.rooms.CreateRoom(ctx, inviter, room.Profile{}, room.CreateRequest{Preset: "private_chat"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.svc.Invite(ctx, room.MembershipRequest{Sender: inviter, RoomID: roomID, Target: alice, Membership: "invite"})
		return roomID, err
	}
	invitedTo := func(roomID string) bool {
		t.Helper()
		ms, err := hs1.rooms.Memberships(alice)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.RoomID == roomID {
				return m.Membership == "invite"
			}
		}
		return false
	}

	setConfig(`{"blocked_servers":["hs2.*"],"allowed_users":["` + carol + `"],"ignored_servers":["hs3.test"]}`)
	roomID, err := invite(hs2, bob)
	var me *matrixerr.Error
	if !errors.As(err, &me) || me.Code != "M_INVITE_BLOCKED" || me.Status != http.StatusForbidden {
		t.Fatalf("bob's invite of alice, whose config blocks hs2: %v, want 403 M_INVITE_BLOCKED", err)
	}
	if invitedTo(roomID) {
		t.Errorf("hs1 stored the invite it refused")
	}
	if hs2.rooms.CurrentStatePDU(roomID, "m.room.member", alice) != nil {
		t.Errorf("hs2 appended the invite hs1 refused")
	}

	for _, c := range []struct {
		s       *ukServer
		inviter string
	}{{hs2, carol}, {hs3, eve}} {
		roomID, err := invite(c.s, c.inviter)
		if err != nil {
			t.Fatalf("%s's invite: %v", c.inviter, err)
		}
		if !invitedTo(roomID) {
			t.Errorf("%s's invite is not stored on hs1", c.inviter)
		}
	}

	setConfig(`{}`)
	if roomID, err := invite(hs2, bob); err != nil || !invitedTo(roomID) {
		t.Errorf("with the config removed, bob's invite: %v (stored %v)", err, err == nil && invitedTo(roomID))
	}
}
