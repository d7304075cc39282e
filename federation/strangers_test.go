package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/store"
)

// TestToDeviceCapForStrangers: a server sharing no room with alice can
// leave at most strangerToDevicePending to-device messages waiting for
// her device, and more once she has synced them; bob's server, which
// shares a room with her, is not capped.
func TestToDeviceCapForStrangers(t *testing.T) {
	ctx := context.Background()
	n := newUKNet()
	hs1, _, alice, bob, _ := sharedRoom(t, n, false)
	sent := 0 // each message its own message_id: a repeated one is a copy
	send := func(origin, sender string, count int) {
		for i := range count {
			sent++
			content := fmt.Sprintf(`{"sender":%q,"type":"m.test","message_id":"m%d","messages":{%q:{"ADEV":{"n":%d}}}}`,
				sender, sent, alice, i)
			hs1.svc.receiveEDU(ctx, spec.ServerName(origin), gomatrixserverlib.EDU{Type: spec.MDirectToDevice, Content: spec.RawJSON(content)})
		}
	}
	pending := func() map[string]int {
		msgs, _, err := hs1.keys.ToDevice(ctx, alice, "ADEV", 0, 1<<62)
		if err != nil {
			t.Fatal(err)
		}
		by := map[string]int{}
		for _, m := range msgs {
			var v struct{ Sender string }
			json.Unmarshal(m, &v)
			by[v.Sender]++
		}
		return by
	}
	const eve = "@eve:hs3.test"
	send("hs3.test", eve, strangerToDevicePending+50)
	send("hs2.test", bob, strangerToDevicePending+50)
	got := pending()
	if got[eve] != strangerToDevicePending {
		t.Errorf("a stranger server left %d messages waiting, want the cap %d", got[eve], strangerToDevicePending)
	}
	if got[bob] != strangerToDevicePending+50 {
		t.Errorf("a server sharing a room left %d messages, want all %d", got[bob], strangerToDevicePending+50)
	}

	// alice's device syncs (acknowledging everything): room again.
	var now uint64
	hs1.db.View(func(tx *store.Tx) error { now = tx.Pos(); return nil })
	if _, _, err := hs1.keys.ToDevice(ctx, alice, "ADEV", now, now); err != nil {
		t.Fatal(err)
	}
	send("hs3.test", eve, 1)
	if got := pending(); got[eve] != 1 {
		t.Errorf("after alice synced, the stranger's next message: %d waiting, want 1", got[eve])
	}
}

// TestInviteCapForStrangers: a server sharing no room with this one gets
// 403 M_FORBIDDEN past strangerPendingInvites unanswered invites, and may
// invite again once one is answered; a server sharing a room is not
// capped.
func TestInviteCapForStrangers(t *testing.T) {
	ctx := context.Background()
	n := newUKNet()
	hs1, hs2, alice, bob, _ := sharedRoom(t, n, false)
	hs3 := newUKServer(t, n, "hs3.test", false)
	eve := hs3.addUser(t, "eve", "EDEV", false)
	invite := func(s *ukServer, inviter string) (string, error) {
		roomID, err := s.rooms.CreateRoom(ctx, inviter, room.Profile{}, room.CreateRequest{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.svc.Invite(ctx, room.MembershipRequest{Sender: inviter, RoomID: roomID, Target: alice, Membership: "invite"})
		return roomID, err
	}
	var first string
	for i := range strangerPendingInvites {
		roomID, err := invite(hs3, eve)
		if err != nil {
			t.Fatalf("stranger's invite %d of %d: %v", i+1, strangerPendingInvites, err)
		}
		if i == 0 {
			first = roomID
		}
	}
	_, err := invite(hs3, eve)
	var me *matrixerr.Error
	if !errors.As(err, &me) || me.Code != "M_FORBIDDEN" {
		t.Fatalf("the stranger's invite past the cap: %v, want M_FORBIDDEN", err)
	}
	for i := range strangerPendingInvites + 2 {
		if _, err := invite(hs2, bob); err != nil {
			t.Fatalf("invite %d from a server sharing a room: %v", i+1, err)
		}
	}
	// alice declines one of eve's invites: eve may invite once more.
	if _, err := hs1.rooms.RejectInviteLocally(ctx, alice, first); err != nil {
		t.Fatal(err)
	}
	if _, err := invite(hs3, eve); err != nil {
		t.Fatalf("after alice answered an invite: %v", err)
	}
}
