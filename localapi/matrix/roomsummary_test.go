package matrix_test

import (
	"net/url"
	"strings"
	"testing"
)

func (c specChecker) summary(t *testing.T, token, roomIDOrAlias, query string) *response {
	t.Helper()
	return c.call(t, "GET", "/_matrix/client/v1/room_summary/"+url.PathEscape(roomIDOrAlias)+query, token, nil)
}

// TestRoomSummary covers GET /room_summary/{roomIdOrAlias} (spec v1.15,
// MSC3266) on one server: the fields, by room ID and by alias, the
// caller's membership, who may see which room (members, anyone for
// public, knockable and world-readable rooms, members of an allowed room
// for a restricted one, nobody else), the same 404 for a private room and
// one that does not exist, callers without a token, the unstable paths,
// and bad input. Every response is checked against room_summary.yaml.
func TestRoomSummary(t *testing.T) {
	sp := loadSpec(t)
	ts := newTestServer(t)
	c := specChecker{ts, sp}
	alice, carol := ts.register(t, "alice"), ts.register(t, "carol")

	public := ts.createRoom(t, alice, map[string]any{"preset": "public_chat", "name": "Cheese", "topic": "Tasty",
		"room_alias_name": "cheese", "initial_state": []map[string]any{{"type": "m.room.encryption", "state_key": "",
			"content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}}}})
	private := ts.createRoom(t, alice, map[string]any{"preset": "private_chat", "name": "Secret"})
	knock := ts.createRoom(t, alice, map[string]any{"preset": "private_chat", "name": "Knock", "room_version": "10",
		"initial_state": []map[string]any{{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{"join_rule": "knock"}}}})
	restricted := ts.createRoom(t, alice, map[string]any{"preset": "private_chat", "room_version": "10",
		"initial_state": []map[string]any{{"type": "m.room.join_rules", "state_key": "",
			"content": map[string]any{"join_rule": "restricted", "allow": []map[string]any{{"type": "m.room_membership", "room_id": public}}}}}})
	readable := ts.createRoom(t, alice, map[string]any{"preset": "private_chat",
		"initial_state": []map[string]any{{"type": "m.room.history_visibility", "state_key": "",
			"content": map[string]any{"history_visibility": "world_readable"}}}})

	// The public room, by ID and by alias, to someone who is not in it.
	for _, target := range []string{public, "#cheese:test.local"} {
		r := c.summary(t, carol.Token, target, "")
		r.wantStatus(t, 200)
		m := r.json(t)
		for k, want := range map[string]any{"room_id": public, "name": "Cheese", "topic": "Tasty", "canonical_alias": "#cheese:test.local",
			"num_joined_members": 1.0, "join_rule": "public", "world_readable": false, "guest_can_join": false,
			"encryption": "m.megolm.v1.aes-sha2", "room_version": "10", "membership": "leave"} {
			if m[k] != want {
				t.Errorf("summary of %s: %s = %v, want %v (%s)", target, k, m[k], want, r.Body)
			}
		}
		if _, ok := m["children_state"]; ok {
			t.Errorf("summary of %s carries the hierarchy's children_state: %s", target, r.Body)
		}
	}

	// A member sees a private room, with their membership; someone else
	// gets the answer for a room that does not exist.
	if m := c.summary(t, alice.Token, private, "").json(t); m["membership"] != "join" || m["name"] != "Secret" {
		t.Errorf("alice's summary of her private room: %v", m)
	}
	notFound := c.summary(t, carol.Token, "!nowhere:test.local", "").wantError(t, 404, "M_NOT_FOUND")
	hidden := c.summary(t, carol.Token, private, "").wantError(t, 404, "M_NOT_FOUND")
	if hidden["error"] != notFound["error"] {
		t.Errorf("a private room (%v) and no room (%v) answer differently", hidden, notFound)
	}
	c.summary(t, carol.Token, "#nothing:test.local", "").wantError(t, 404, "M_NOT_FOUND")

	// Knockable and world-readable rooms are open to anyone.
	if m := c.summary(t, carol.Token, knock, "").json(t); m["join_rule"] != "knock" || m["membership"] != "leave" {
		t.Errorf("knock room: %v", m)
	}
	if m := c.summary(t, carol.Token, readable, "").json(t); m["world_readable"] != true {
		t.Errorf("world-readable room: %v", m)
	}

	// A restricted room, once carol is in the room it allows.
	c.summary(t, carol.Token, restricted, "").wantError(t, 404, "M_NOT_FOUND")
	ts.join(t, carol, public)
	r := c.summary(t, carol.Token, restricted, "")
	r.wantStatus(t, 200)
	if m := r.json(t); m["join_rule"] != "restricted" || len(m["allowed_room_ids"].([]any)) != 1 || m["allowed_room_ids"].([]any)[0] != public {
		t.Errorf("restricted room: %s", r.Body)
	}
	if m := c.summary(t, carol.Token, public, "").json(t); m["membership"] != "join" || m["num_joined_members"] != 2.0 {
		t.Errorf("after joining: %v", m)
	}

	// Invited and banned users see the room with that membership.
	ts.do(t, "POST", v3path+"/rooms/"+url.PathEscape(private)+"/invite", alice.Token, map[string]any{"user_id": carol.ID}).wantStatus(t, 200)
	if m := c.summary(t, carol.Token, private, "").json(t); m["membership"] != "invite" {
		t.Errorf("invited: %v", m)
	}
	ts.do(t, "POST", v3path+"/rooms/"+url.PathEscape(knock)+"/ban", alice.Token, map[string]any{"user_id": carol.ID}).wantStatus(t, 200)
	if m := c.summary(t, carol.Token, knock, "").json(t); m["membership"] != "ban" {
		t.Errorf("banned: %v", m)
	}

	// Without a token: public, knockable and world-readable rooms only,
	// and no membership.
	for _, id := range []string{public, knock, readable} {
		r := c.summary(t, "", id, "")
		r.wantStatus(t, 200)
		if _, ok := r.json(t)["membership"]; ok {
			t.Errorf("anonymous summary of %s has a membership: %s", id, r.Body)
		}
	}
	for _, id := range []string{private, restricted} {
		c.summary(t, "", id, "").wantError(t, 404, "M_NOT_FOUND")
	}
	// A token that is wrong is refused, not taken as no token.
	c.summary(t, "not-a-token", public, "").wantError(t, 401, "M_UNKNOWN_TOKEN")

	// MSC3266's unstable paths, with the unstable field names too.
	for _, p := range []string{"/_matrix/client/unstable/im.nheko.summary/summary/" + url.PathEscape(public),
		"/_matrix/client/unstable/im.nheko.summary/rooms/" + url.PathEscape(public) + "/summary"} {
		r := ts.do(t, "GET", p, carol.Token, nil)
		r.wantStatus(t, 200)
		m := r.json(t)
		if m["room_id"] != public || m["im.nheko.summary.encryption"] != "m.megolm.v1.aes-sha2" ||
			m["im.nheko.summary.room_version"] != "10" || m["encryption"] != "m.megolm.v1.aes-sha2" {
			t.Errorf("%s: %s", p, r.Body)
		}
	}

	// Bad input.
	c.summary(t, carol.Token, "cheese", "").wantError(t, 400, "M_INVALID_PARAM")
	c.summary(t, carol.Token, public, "?via=bad:port").wantError(t, 400, "M_INVALID_PARAM")
	c.summary(t, carol.Token, "!"+strings.Repeat("a", 300)+":test.local", "").wantError(t, 400, "M_INVALID_PARAM")

	features := ts.do(t, "GET", "/_matrix/client/versions", "", nil).json(t)["unstable_features"].(map[string]any)
	if features["im.nheko.summary"] != true || features["org.matrix.msc3266"] != true {
		t.Errorf("/versions does not advertise room summaries: %v", features)
	}
}
