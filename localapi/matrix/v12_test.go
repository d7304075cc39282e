package matrix_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"testing"
)

// TestRoomV12CreationRules: POST /createRoom and state sends in room
// version 12 (MSC4289 privileged creators, MSC4291 room IDs from the
// create event): what no one may ever send is a bad request (400), not a
// forbidden one; creators stay out of the power levels, which give
// m.room.tombstone level 150; trusted_private_chat makes the invitees
// creators.
func TestRoomV12CreationRules(t *testing.T) {
	ts := newTestServer(t)
	alice, bob, carol := ts.register(t, "alice"), ts.register(t, "bob"), ts.register(t, "carol")
	create := func(body map[string]any) *response {
		body["room_version"] = "12"
		return ts.do(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, body)
	}
	for name, body := range map[string]map[string]any{
		"override names the creator":       {"power_level_content_override": map[string]any{"users": map[string]any{alice.ID: 100}}},
		"override with a string level":     {"power_level_content_override": map[string]any{"ban": "50"}},
		"additional_creators not a list":   {"creation_content": map[string]any{"additional_creators": "not-an-array"}},
		"additional_creators not strings":  {"creation_content": map[string]any{"additional_creators": []any{"@foo:example.com", 42}}},
		"additional_creators not user IDs": {"creation_content": map[string]any{"additional_creators": []any{"@foo:example.com", "not-a-user-id"}}},
		"additional_creators bad domain":   {"creation_content": map[string]any{"additional_creators": []any{"@invalid:dom$ain$.com"}}},
		"initial_state m.room.create":      {"initial_state": []map[string]any{{"type": "m.room.create", "state_key": "", "content": map[string]any{"room_version": "12"}}}},
	} {
		if r := create(body); r.Status != 400 {
			t.Errorf("%s: %d %s, want 400", name, r.Status, r.Body)
		}
	}
	if r := create(map[string]any{"creation_content": map[string]any{"additional_creators": []any{"@foo:example.com", "@bar:baz.code"}}}); r.Status != 200 {
		t.Errorf("valid additional_creators: %d %s", r.Status, r.Body)
	}

	roomID := ts.createRoom(t, alice, map[string]any{"room_version": "12", "preset": "public_chat"})
	state := func(typ string) map[string]any {
		r := ts.do(t, "GET", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/state/"+typ+"/", alice.Token, nil)
		r.wantStatus(t, 200)
		return r.json(t)
	}
	pl := state("m.room.power_levels")
	if users := pl["users"].(map[string]any); len(users) != 0 {
		t.Errorf("power levels list users %v, want none", users)
	}
	if lvl := pl["events"].(map[string]any)["m.room.tombstone"]; lvl != 150.0 {
		t.Errorf("m.room.tombstone level %v, want 150", lvl)
	}
	put := func(typ string, content any) *response {
		return ts.do(t, "PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/state/"+typ+"/", alice.Token, content)
	}
	if r := put("m.room.power_levels", map[string]any{"users": map[string]any{alice.ID: 100}}); r.Status != 400 {
		t.Errorf("PUT power levels naming the creator: %d %s, want 400", r.Status, r.Body)
	}
	if r := put("m.room.power_levels", map[string]any{"ban": "50"}); r.Status != 400 {
		t.Errorf("PUT power levels with a string level: %d %s, want 400", r.Status, r.Body)
	}
	if r := put("m.room.create", map[string]any{"room_version": "12", "entropy": 100}); r.Status != 400 {
		t.Errorf("PUT m.room.create: %d %s, want 400", r.Status, r.Body)
	}
	if r := put("m.room.power_levels", map[string]any{"users": map[string]any{bob.ID: 100}}); r.Status != 200 {
		t.Errorf("PUT power levels for bob: %d %s", r.Status, r.Body)
	}

	dm := ts.createRoom(t, alice, map[string]any{"room_version": "12", "preset": "trusted_private_chat", "is_direct": true,
		"invite": []string{bob.ID}, "creation_content": map[string]any{"additional_creators": []string{carol.ID}}})
	r := ts.do(t, "GET", "/_matrix/client/v3/rooms/"+url.PathEscape(dm)+"/state/m.room.create/", alice.Token, nil)
	r.wantStatus(t, 200)
	var cc struct {
		AdditionalCreators []string `json:"additional_creators"`
	}
	json.Unmarshal(r.Body, &cc)
	slices.Sort(cc.AdditionalCreators)
	if want := []string{bob.ID, carol.ID}; fmt.Sprint(cc.AdditionalCreators) != fmt.Sprint(want) {
		t.Errorf("additional_creators %v, want %v", cc.AdditionalCreators, want)
	}
	r = ts.do(t, "GET", "/_matrix/client/v3/rooms/"+url.PathEscape(dm)+"/state/m.room.power_levels/", alice.Token, nil)
	if users := r.json(t)["users"].(map[string]any); len(users) != 0 {
		t.Errorf("trusted_private_chat power levels list users %v, want none (they are creators)", users)
	}
}

// TestInviteStateHasWholeCreateEvent: an invitee's /sync shows the room's
// create event whole in invite_state (spec v1.16, MSC4311), so the client
// can check the room ID against it; the other entries stay stripped.
func TestInviteStateHasWholeCreateEvent(t *testing.T) {
	ts := newTestServer(t)
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	roomID := ts.createRoom(t, alice, map[string]any{"room_version": "12", "preset": "public_chat", "name": "Tea"})
	ts.do(t, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/invite", alice.Token, map[string]any{"user_id": bob.ID}).wantStatus(t, 200)
	r := ts.do(t, "GET", "/_matrix/client/v3/sync", bob.Token, nil)
	r.wantStatus(t, 200)
	var body struct {
		Rooms struct {
			Invite map[string]struct {
				InviteState struct {
					Events []map[string]any `json:"events"`
				} `json:"invite_state"`
			} `json:"invite"`
		} `json:"rooms"`
	}
	json.Unmarshal(r.Body, &body)
	var create, name map[string]any
	for _, ev := range body.Rooms.Invite[roomID].InviteState.Events {
		switch ev["type"] {
		case "m.room.create":
			create = ev
		case "m.room.name":
			name = ev
		}
	}
	if create == nil || create["origin_server_ts"] == nil || create["sender"] != alice.ID {
		t.Errorf("create event in invite_state: %v", create)
	}
	if name == nil || name["origin_server_ts"] != nil {
		t.Errorf("name event in invite_state: %v, want stripped", name)
	}
}
