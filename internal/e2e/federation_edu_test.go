package e2e

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// joinOverFederation has bob (on another server) join a room of alice's
// by alias and waits until alice's server has his join, so both servers
// count each other as in the room. It returns the tokens after it.
func joinOverFederation(t *testing.T, alice, bob *mautrix.Client, alias string, roomID id.RoomID, aliceTok string) string {
	t.Helper()
	joined, err := bob.JoinRoom(ctx(t), alias, nil)
	noErr(t, err, "%s joins %s", bob.UserID, alias)
	if joined.RoomID != roomID {
		t.Fatalf("join by alias gave %s, want %s", joined.RoomID, roomID)
	}
	SyncUntil(t, alice, aliceTok, "", "the join on alice's server", func(r *mautrix.RespSync) bool {
		for _, ev := range r.Rooms.Join[roomID].Timeline.Events {
			if ev.Type == event.StateMember && ev.GetStateKey() == bob.UserID.String() {
				return true
			}
		}
		return false
	})
	return Quiesce(t, alice, aliceTok)
}

// TestFederationEphemeralAndQueries: typing, read receipts and presence
// cross between two daemons, and a user of one server reads a profile and
// the public room directory of the other.
func TestFederationEphemeralAndQueries(t *testing.T) {
	t.Parallel()
	net := startFedNet(t, "hs1.test", "hs2.test")
	hs1, hs2 := net.Daemons["hs1.test"], net.Daemons["hs2.test"]
	alice := hs1.Register("alice")
	bob := hs2.Register("bob")
	noErr(t, alice.SetDisplayName(ctx(t), "Alice Liddell"), "alice sets her display name")

	roomID := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Name: "Tea party", Topic: "unbirthdays",
		RoomAliasName: "tea", Preset: "public_chat", Visibility: "public"})
	aliceTok := Quiesce(t, alice, Sync(t, alice, "", "", 0).NextBatch)
	aliceTok = joinOverFederation(t, alice, bob, "#tea:hs1.test", roomID, aliceTok)
	bobTok := Quiesce(t, bob, Sync(t, bob, "", "", 0).NextBatch)

	// Typing by alice@hs1 shows in bob's /sync on hs2.
	_, err := alice.UserTyping(ctx(t), roomID, true, 20*time.Second)
	noErr(t, err, "alice starts typing")
	SyncUntil(t, bob, bobTok, "", "alice typing on hs2", func(r *mautrix.RespSync) bool {
		for _, ev := range ephemeral(r, roomID, event.EphemeralEventTyping) {
			if slices.Contains(typingUsers(ev), alice.UserID) {
				return true
			}
		}
		return false
	})
	bobTok = Quiesce(t, bob, bobTok)

	// bob writes; alice reads it and her read receipt reaches hs2.
	msg := SendText(t, bob, roomID, "is it six o'clock?")
	var got []string
	SyncUntil(t, alice, aliceTok, "", "bob's message on hs1", collectTexts(roomID, &got, 1))
	aliceTok = Quiesce(t, alice, aliceTok)
	noErr(t, alice.SendReceipt(ctx(t), roomID, msg, event.ReceiptTypeRead, nil), "alice's read receipt")
	SyncUntil(t, bob, bobTok, "", "alice's receipt on hs2", func(r *mautrix.RespSync) bool {
		for _, ev := range ephemeral(r, roomID, event.EphemeralEventReceipt) {
			if receiptBy(ev, msg, "m.read", alice.UserID) {
				return true
			}
		}
		return false
	})

	// bob@hs2 reads alice's profile from hs1.
	prof, err := bob.GetProfile(ctx(t), alice.UserID)
	noErr(t, err, "bob reads alice's profile")
	if prof.DisplayName != "Alice Liddell" {
		t.Errorf("alice's display name seen from hs2 = %q", prof.DisplayName)
	}
	_, err = bob.GetProfile(ctx(t), hs1.UserID("nobody"))
	wantMatrixErr(t, err, 404, "M_NOT_FOUND", "a profile hs1 does not have")

	// bob lists hs1's public rooms, by GET and by POST with a filter.
	for _, req := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/_matrix/client/v3/publicRooms?server=hs1.test", nil},
		{"POST", "/_matrix/client/v3/publicRooms?server=hs1.test", map[string]any{"filter": map[string]any{"generic_search_term": "unbirth"}}},
	} {
		code, b := Raw(t, bob, req.method, req.path, req.body)
		if code != 200 {
			t.Fatalf("%s %s: %d %s", req.method, req.path, code, b)
		}
		var page struct {
			Chunk []struct {
				RoomID  id.RoomID `json:"room_id"`
				Name    string    `json:"name"`
				Members int       `json:"num_joined_members"`
			} `json:"chunk"`
		}
		noErr(t, json.Unmarshal(b, &page), "decode publicRooms")
		if len(page.Chunk) != 1 || page.Chunk[0].RoomID != roomID || page.Chunk[0].Name != "Tea party" || page.Chunk[0].Members != 2 {
			t.Errorf("%s %s: chunk %+v, want the tea party with 2 members", req.method, req.path, page.Chunk)
		}
	}
	code, b := Raw(t, bob, "POST", "/_matrix/client/v3/publicRooms?server=hs1.test", map[string]any{"filter": map[string]any{"generic_search_term": "no such room"}})
	if code != 200 || !json.Valid(b) || string(mustField(t, b, "chunk")) != "[]" {
		t.Errorf("filtered publicRooms of hs1: %d %s, want an empty chunk", code, b)
	}

	// bob's presence reaches alice. (bob does not /sync after this, which
	// would set him online again.)
	noErr(t, bob.SetPresence(ctx(t), mautrix.ReqPresence{Presence: event.PresenceUnavailable, StatusMsg: "painting roses"}), "bob sets his presence")
	SyncUntil(t, alice, aliceTok, "", "bob's presence on hs1", func(r *mautrix.RespSync) bool {
		for _, ev := range r.Presence.Events {
			if ev.Sender == bob.UserID && ev.Content.Raw["presence"] == "unavailable" && ev.Content.Raw["status_msg"] == "painting roses" {
				return true
			}
		}
		return false
	})
	code, b = Raw(t, alice, "GET", "/_matrix/client/v3/presence/"+bob.UserID.String()+"/status", nil)
	if code != 200 || string(mustField(t, b, "presence")) != `"unavailable"` {
		t.Errorf("GET bob's presence on hs1: %d %s", code, b)
	}
}

// mustField returns one top-level field of a JSON object.
func mustField(t *testing.T, b []byte, field string) json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	noErr(t, json.Unmarshal(b, &m), "decode %s", b)
	return m[field]
}

// TestFederationServerACL: once alice's room denies hs2 by
// m.room.server_acl, hs1 refuses what bob@hs2 sends to it and sends
// nothing of it to hs2, while a second room without an ACL keeps working
// both ways; a room that denies hs2 from the start refuses bob's join.
func TestFederationServerACL(t *testing.T) {
	t.Parallel()
	net := startFedNet(t, "hs1.test", "hs2.test")
	hs1, hs2 := net.Daemons["hs1.test"], net.Daemons["hs2.test"]
	alice := hs1.Register("alice")
	bob := hs2.Register("bob")

	fenced := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Name: "Fenced", RoomAliasName: "fenced", Preset: "public_chat"})
	open := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Name: "Open", RoomAliasName: "open", Preset: "public_chat"})
	aliceTok := Quiesce(t, alice, Sync(t, alice, "", "", 0).NextBatch)
	aliceTok = joinOverFederation(t, alice, bob, "#fenced:hs1.test", fenced, aliceTok)
	aliceTok = joinOverFederation(t, alice, bob, "#open:hs1.test", open, aliceTok)
	bobTok := Quiesce(t, bob, Sync(t, bob, "", "", 0).NextBatch)

	acl := map[string]any{"allow": []string{"*"}, "deny": []string{"hs2.test"}, "allow_ip_literals": false}
	_, err := alice.SendStateEvent(ctx(t), fenced, event.StateServerACL, "", acl)
	noErr(t, err, "alice denies hs2 in the fenced room")
	aliceTok = Quiesce(t, alice, aliceTok)

	// Inbound: bob's message in the fenced room is refused by hs1. His
	// message in the open room leaves hs2 after it, so once alice has
	// that one, hs1 has already judged the first.
	SendText(t, bob, fenced, "let me in")
	SendText(t, bob, open, "still here")
	var got []string
	SyncUntil(t, alice, aliceTok, "", "bob's message in the open room", collectTexts(open, &got, 1))
	for _, ev := range History(t, alice, fenced, "", 50) {
		if body(ev) == "let me in" {
			t.Fatalf("hs1 stored a message from a server its ACL denies")
		}
	}

	// Outbound: hs1 does not send the fenced room's events to hs2.
	SendText(t, alice, fenced, "not for hs2")
	SendText(t, alice, open, "for everyone")
	got = nil
	var fencedSeen []string
	SyncUntil(t, bob, bobTok, "", "alice's message in the open room on hs2", func(r *mautrix.RespSync) bool {
		collectTexts(fenced, &fencedSeen, 0)(r)
		return collectTexts(open, &got, 1)(r)
	})
	if slices.Contains(fencedSeen, "not for hs2") {
		t.Fatalf("hs1 sent the fenced room's message to the denied hs2")
	}
	for _, ev := range History(t, bob, fenced, "", 50) {
		if body(ev) == "not for hs2" {
			t.Fatalf("hs2 has the fenced room's message")
		}
	}

	// A room that denies hs2 from its creation refuses bob's make_join.
	CreateRoom(t, alice, &mautrix.ReqCreateRoom{Name: "Walled", RoomAliasName: "walled", Preset: "public_chat",
		InitialState: []*event.Event{{Type: event.StateServerACL, StateKey: ptr(""), Content: event.Content{Raw: acl}}}})
	_, err = bob.JoinRoom(ctx(t), "#walled:hs1.test", nil)
	wantMatrixErr(t, err, 403, "M_FORBIDDEN", "bob@hs2 joins a room whose ACL denies hs2")
}

func ptr[T any](v T) *T { return &v }
