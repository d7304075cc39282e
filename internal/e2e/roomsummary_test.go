package e2e

import (
	"encoding/json"
	"net/url"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// TestFederatedRoomSummary: bob of hs2, in none of alice's rooms on hs1,
// previews them with GET /room_summary (MSC3266) before joining. hs2 is
// in none of them, so it asks hs1 through the federation /hierarchy: the
// public room, by ID with via and by alias, and the knock-only room are
// described; the private room is the 404 of a room that does not exist,
// until bob is invited: then hs2 describes it from the invite's state.
// Without a token hs2 answers for the public room (without membership)
// and limits how often such callers make it ask hs1. Once bob has joined,
// hs2 answers from its own copy of the room.
func TestFederatedRoomSummary(t *testing.T) {
	t.Parallel()
	net := startFedNet(t, "hs1.test", "hs2.test")
	hs2 := net.Daemons["hs2.test"]
	alice := net.Daemons["hs1.test"].Register("alice")
	bob := hs2.Register("bob")
	anon := hs2.Client("", "")

	public := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Name: "Lobby", Topic: "Come in", Preset: "public_chat", RoomAliasName: "lobby"})
	private := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Name: "Den", Preset: "private_chat"})
	knock := knockOnlyRoom(t, alice, "Knock first", "")

	summary := func(c *mautrix.Client, target id.RoomID, query string) (int, map[string]any) {
		t.Helper()
		code, body := Raw(t, c, "GET", "/_matrix/client/v1/room_summary/"+url.PathEscape(string(target))+query, nil)
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("summary of %s: %d %s", target, code, body)
		}
		return code, m
	}
	want := func(what string, code int, m map[string]any, fields map[string]any) {
		t.Helper()
		if code != 200 {
			t.Fatalf("%s: %d %v", what, code, m)
		}
		for k, v := range fields {
			if m[k] != v {
				t.Errorf("%s: %s = %v, want %v (%v)", what, k, m[k], v, m)
			}
		}
	}

	code, m := summary(bob, public, "?via=hs1.test")
	want("public room by ID", code, m, map[string]any{"room_id": string(public), "name": "Lobby", "topic": "Come in",
		"canonical_alias": "#lobby:hs1.test", "join_rule": "public", "num_joined_members": 1.0, "membership": "leave"})
	if m["room_version"] == nil {
		t.Errorf("public room by ID: no room_version: %v", m)
	}
	code, m = summary(bob, "#lobby:hs1.test", "")
	want("public room by alias", code, m, map[string]any{"room_id": string(public), "name": "Lobby"})
	code, m = summary(bob, knock, "?via=hs1.test")
	want("knock room", code, m, map[string]any{"room_id": string(knock), "name": "Knock first", "join_rule": "knock"})
	if code, m := summary(bob, private, "?via=hs1.test"); code != 404 || m["errcode"] != "M_NOT_FOUND" {
		t.Errorf("private room: %d %v, want 404 M_NOT_FOUND", code, m)
	}

	// Invited, bob sees the private room as the invite described it, as
	// his /sync does: hs1 would not describe it to hs2.
	_, err := alice.InviteUser(ctx(t), private, &mautrix.ReqInviteUser{UserID: bob.UserID})
	noErr(t, err, "alice invites bob to the private room")
	m = waitFor(t, "bob's summary of the room he is invited to", func() (map[string]any, bool) {
		code, m := summary(bob, private, "?via=hs1.test")
		return m, code == 200
	})
	want("private room, invited", 200, m, map[string]any{"room_id": string(private), "name": "Den",
		"join_rule": "invite", "membership": "invite"})
	if code, m := summary(anon, private, "?via=hs1.test"); code != 404 {
		t.Errorf("private room without a token after bob's invite: %d %v", code, m)
	}

	code, m = summary(anon, public, "?via=hs1.test")
	want("public room without a token", code, m, map[string]any{"room_id": string(public)})
	if _, ok := m["membership"]; ok {
		t.Errorf("public room without a token: membership %v", m["membership"])
	}
	if code, m := summary(anon, private, "?via=hs1.test"); code != 404 || m["errcode"] != "M_NOT_FOUND" {
		t.Errorf("private room without a token: %d %v, want 404 M_NOT_FOUND", code, m)
	}
	limited := false
	for i := 0; i < 30 && !limited; i++ {
		code, m := summary(anon, public, "?via=hs1.test")
		if code == 429 {
			limited = m["errcode"] == "M_LIMIT_EXCEEDED" && m["retry_after_ms"] != nil
			if !limited {
				t.Fatalf("429 without M_LIMIT_EXCEEDED and retry_after_ms: %v", m)
			}
		} else if code != 200 {
			t.Fatalf("anonymous summary %d: %d %v", i, code, m)
		}
	}
	if !limited {
		t.Errorf("30 anonymous summaries over federation in a row were all answered")
	}
	// bob has a token: his requests are not limited with the anonymous ones.
	code, m = summary(bob, public, "?via=hs1.test")
	want("public room as bob after the anonymous flood", code, m, map[string]any{"room_id": string(public)})

	_, err = bob.JoinRoom(ctx(t), string(public), &mautrix.ReqJoinRoom{Via: []string{"hs1.test"}})
	noErr(t, err, "bob joins the public room")
	code, m = summary(bob, public, "")
	want("public room once joined", code, m, map[string]any{"membership": "join", "num_joined_members": 2.0, "name": "Lobby"})
}
