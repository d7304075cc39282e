package e2e

import (
	"net/url"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// TestInviteFilterBetweenDaemons: MSC4155 between two daemons, as
// Complement's TestInviteFiltering drives it. alice@hs1 blocks the
// servers matching "hs2*" but allows carol@hs2 and ignores dave@hs1:
// bob@hs2's POST /invite answers 403 M_INVITE_BLOCKED (hs1 refused it
// over federation) and his room holds no invite; carol's invite reaches
// alice's /sync; dave's succeeds for him but never shows in alice's
// /sync. With the config removed bob can invite her.
func TestInviteFilterBetweenDaemons(t *testing.T) {
	t.Parallel()
	net := startFedNet(t, "hs1.test", "hs2.test")
	hs1, hs2 := net.Daemons["hs1.test"], net.Daemons["hs2.test"]
	alice, dave := hs1.Register("alice"), hs1.Register("dave")
	bob, carol := hs2.Register("bob"), hs2.Register("carol")
	setConfig := func(config map[string]any) {
		t.Helper()
		noErr(t, alice.SetAccountData(ctx(t), "org.matrix.msc4155.invite_permission_config", config), "alice sets her invite config")
	}
	invite := func(c *mautrix.Client, roomID id.RoomID) (int, string) {
		t.Helper()
		status, body := Raw(t, c, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID.String())+"/invite",
			map[string]any{"user_id": alice.UserID})
		return status, string(body)
	}
	setConfig(map[string]any{"blocked_servers": []string{"hs2*"}, "allowed_users": []string{carol.UserID.String()},
		"ignored_users": []string{dave.UserID.String()}})
	aliceTok := Quiesce(t, alice, Sync(t, alice, "", "", 0).NextBatch)

	fromBob := CreateRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	if status, body := invite(bob, fromBob); status != 403 || !strings.Contains(body, "M_INVITE_BLOCKED") {
		t.Errorf("bob's invite of alice, who blocks hs2: %d %s, want 403 M_INVITE_BLOCKED", status, body)
	}
	members, err := bob.Members(ctx(t), fromBob)
	noErr(t, err, "members of bob's room")
	for _, ev := range members.Chunk {
		if ev.GetStateKey() == alice.UserID.String() {
			t.Errorf("bob's room holds a membership of alice after the refused invite: %s", ev.Content.VeryRaw)
		}
	}

	fromDave := CreateRoom(t, dave, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	if status, body := invite(dave, fromDave); status != 200 {
		t.Errorf("dave's ignored invite: %d %s, want it to look like a success", status, body)
	}
	fromCarol := CreateRoom(t, carol, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	if status, body := invite(carol, fromCarol); status != 200 {
		t.Fatalf("carol's allowed invite: %d %s", status, body)
	}
	SyncUntil(t, alice, aliceTok, "", "carol's invite", func(r *mautrix.RespSync) bool {
		if r.Rooms.Invite[fromDave] != nil || r.Rooms.Invite[fromBob] != nil {
			t.Errorf("alice's incremental sync shows an invite her config ignores or blocks")
		}
		return r.Rooms.Invite[fromCarol] != nil
	})
	if inv := Sync(t, alice, "", "", 0).Rooms.Invite; inv[fromDave] != nil || inv[fromBob] != nil || inv[fromCarol] == nil {
		t.Errorf("alice's initial sync: invites %v, want carol's alone", inv)
	}

	setConfig(map[string]any{})
	if status, body := invite(bob, fromBob); status != 200 {
		t.Errorf("bob's invite with alice's config removed: %d %s", status, body)
	}
}
