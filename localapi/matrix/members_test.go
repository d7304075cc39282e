package matrix_test

import (
	"encoding/json"
	"net/url"
	"slices"
	"testing"
)

// memberKeys reads a /members answer as "membership|state_key" entries,
// sorted.
func memberKeys(t *testing.T, r *response) []string {
	t.Helper()
	r.wantStatus(t, 200)
	var body struct {
		Chunk []struct {
			StateKey string `json:"state_key"`
			Content  struct {
				Membership string `json:"membership"`
			} `json:"content"`
		} `json:"chunk"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ev := range body.Chunk {
		out = append(out, ev.Content.Membership+"|"+ev.StateKey)
	}
	slices.Sort(out)
	return out
}

// TestJoinedMembersProfileFields: every entry of /joined_members has
// display_name and avatar_url, null when unset (Complement TestRoomState
// "joined_members fetches my membership").
func TestJoinedMembersProfileFields(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	rid := ts.createRoom(t, alice, nil)
	r := ts.do(t, "GET", covRoomPath(rid)+"/joined_members", alice.Token, nil)
	r.wantStatus(t, 200)
	var body struct {
		Joined map[string]map[string]json.RawMessage `json:"joined"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	me, ok := body.Joined[alice.ID]
	if !ok {
		t.Fatalf("alice missing from %s", r.Body)
	}
	for _, k := range []string{"display_name", "avatar_url"} {
		if _, ok := me[k]; !ok {
			t.Errorf("joined.%s.%s missing: %s", alice.ID, k, r.Body)
		}
	}
}

// TestMembersAtAndFilters covers GET /members with at (a sync's
// prev_batch: the members as at that point), membership and
// not_membership (Complement TestGetRoomMembersAtPoint,
// TestGetFilteredRoomMembers).
func TestMembersAtAndFilters(t *testing.T) {
	ts := newTestServer(t)
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	rid := ts.createRoom(t, alice, map[string]any{"preset": "public_chat"})
	ts.send(t, alice, rid, "t1", "hello")
	resp := covSync(t, ts, alice, "")
	tl := resp["rooms"].(map[string]any)["join"].(map[string]any)[rid].(map[string]any)["timeline"].(map[string]any)
	prevBatch, _ := tl["prev_batch"].(string)
	if prevBatch == "" {
		t.Fatalf("no prev_batch in %v", tl)
	}
	covJoin(t, ts, bob, rid)
	ts.send(t, bob, rid, "t2", "hello back")
	members := covRoomPath(rid) + "/members"

	if got := memberKeys(t, ts.do(t, "GET", members+"?at="+url.QueryEscape(prevBatch), alice.Token, nil)); !slices.Equal(got, []string{"join|" + alice.ID}) {
		t.Errorf("members at the initial sync's prev_batch = %v, want alice only", got)
	}
	if got := memberKeys(t, ts.do(t, "GET", members, alice.Token, nil)); len(got) != 2 {
		t.Errorf("members now = %v, want alice and bob", got)
	}
	ts.do(t, "GET", members+"?at=nonsense", alice.Token, nil).wantError(t, 400, "M_INVALID_PARAM")

	ts.do(t, "POST", covRoomPath(rid)+"/leave", bob.Token, map[string]any{}).wantStatus(t, 200)
	for q, want := range map[string][]string{
		"not_membership=leave": {"join|" + alice.ID},
		"membership=leave":     {"leave|" + bob.ID},
		"membership=join":      {"join|" + alice.ID},
	} {
		if got := memberKeys(t, ts.do(t, "GET", members+"?"+q, alice.Token, nil)); !slices.Equal(got, want) {
			t.Errorf("members?%s = %v, want %v", q, got, want)
		}
	}
}

// TestLeftUserSeesRoomAsAtLeave: after leaving, /members and /state show
// the room as it was at the leave, not later joins or changes.
func TestLeftUserSeesRoomAsAtLeave(t *testing.T) {
	ts := newTestServer(t)
	alice, bob, carol := ts.register(t, "alice"), ts.register(t, "bob"), ts.register(t, "carol")
	rid := ts.createRoom(t, alice, map[string]any{"preset": "public_chat", "name": "before"})
	covJoin(t, ts, bob, rid)
	ts.do(t, "POST", covRoomPath(rid)+"/leave", bob.Token, map[string]any{}).wantStatus(t, 200)
	covJoin(t, ts, carol, rid)
	ts.do(t, "PUT", covRoomPath(rid)+"/state/m.room.name/", alice.Token, map[string]any{"name": "after"}).wantStatus(t, 200)

	got := memberKeys(t, ts.do(t, "GET", covRoomPath(rid)+"/members", bob.Token, nil))
	if want := []string{"join|" + alice.ID, "leave|" + bob.ID}; !slices.Equal(got, want) {
		t.Errorf("bob's /members after leaving = %v, want %v", got, want)
	}
	r := ts.do(t, "GET", covRoomPath(rid)+"/state/m.room.name/", bob.Token, nil)
	r.wantStatus(t, 200)
	if name := r.json(t)["name"]; name != "before" {
		t.Errorf("bob reads the room name %v after leaving, want the name at his leave", name)
	}
}

// TestForgottenRoomReadsForbidden: once forgotten, a room's history and
// state are no longer served (Complement TestRoomForget "Forgotten room
// messages cannot be paginated"); rejoining after a new invite restores it.
func TestForgottenRoomReadsForbidden(t *testing.T) {
	ts := newTestServer(t)
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	rid := ts.createRoom(t, alice, map[string]any{"preset": "public_chat"})
	covJoin(t, ts, bob, rid)
	ts.send(t, alice, rid, "t1", "hello")
	ts.do(t, "POST", covRoomPath(rid)+"/leave", bob.Token, map[string]any{}).wantStatus(t, 200)
	ts.do(t, "GET", covRoomPath(rid)+"/messages?dir=b", bob.Token, nil).wantStatus(t, 200)
	ts.do(t, "POST", covRoomPath(rid)+"/forget", bob.Token, map[string]any{}).wantStatus(t, 200)
	for _, p := range []string{"/messages?dir=b", "/members", "/state"} {
		ts.do(t, "GET", covRoomPath(rid)+p, bob.Token, nil).wantError(t, 403, "M_FORBIDDEN")
	}
	covJoin(t, ts, bob, rid)
	ts.do(t, "GET", covRoomPath(rid)+"/messages?dir=b", bob.Token, nil).wantStatus(t, 200)
}

// TestJoinCustomContent: the body of POST /join/{roomIdOrAlias} and
// /rooms/{roomId}/join goes into the member event, except that membership
// is always join (Complement "POST /join/:room_id can join a room with
// custom content").
func TestJoinCustomContent(t *testing.T) {
	ts := newTestServer(t)
	alice, bob, carol := ts.register(t, "alice"), ts.register(t, "bob"), ts.register(t, "carol")
	rid := ts.createRoom(t, alice, map[string]any{"preset": "public_chat"})
	for _, j := range []struct {
		u    *testUser
		path string
	}{{bob, covV3 + "/join/" + url.PathEscape(rid)}, {carol, covRoomPath(rid) + "/join"}} {
		ts.do(t, "POST", j.path, j.u.Token, map[string]any{"foo": "bar", "membership": "leave", "reason": "hi"}).wantStatus(t, 200)
		r := ts.do(t, "GET", covRoomPath(rid)+"/state/m.room.member/"+url.PathEscape(j.u.ID), alice.Token, nil)
		r.wantStatus(t, 200)
		c := r.json(t)
		if c["foo"] != "bar" || c["membership"] != "join" || c["reason"] != "hi" {
			t.Errorf("%s's member event after %s = %v", j.u.ID, j.path, c)
		}
	}
	ts.do(t, "POST", covRoomPath(rid)+"/join", bob.Token, map[string]any{"reason": 5}).wantError(t, 400, "M_BAD_JSON")
}

// TestInviteCarriesInviteeProfile: an invite's member event names the
// invitee's displayname and avatar_url, so clients show "invited Bobby"
// rather than a bare user ID.
func TestInviteCarriesInviteeProfile(t *testing.T) {
	ts := newTestServer(t)
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	ts.do(t, "PUT", covV3+"/profile/"+url.PathEscape(bob.ID)+"/displayname", bob.Token, map[string]any{"displayname": "Bobby"}).wantStatus(t, 200)
	ts.do(t, "PUT", covV3+"/profile/"+url.PathEscape(bob.ID)+"/avatar_url", bob.Token, map[string]any{"avatar_url": "mxc://test.local/bob"}).wantStatus(t, 200)
	rid := ts.createRoom(t, alice, nil)
	ts.do(t, "POST", covRoomPath(rid)+"/invite", alice.Token, map[string]any{"user_id": bob.ID}).wantStatus(t, 200)
	r := ts.do(t, "GET", covRoomPath(rid)+"/state/m.room.member/"+url.PathEscape(bob.ID), alice.Token, nil)
	r.wantStatus(t, 200)
	if c := r.json(t); c["membership"] != "invite" || c["displayname"] != "Bobby" || c["avatar_url"] != "mxc://test.local/bob" {
		t.Errorf("bob's invite event content = %v", c)
	}
}

// TestCreateRoomInviteCarriesInviteeProfile: the invites createRoom makes
// name the invitee as POST /invite does, so a DM started with createRoom
// reads "invited Bobby" before bob joins.
func TestCreateRoomInviteCarriesInviteeProfile(t *testing.T) {
	ts := newTestServer(t)
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	ts.do(t, "PUT", covV3+"/profile/"+url.PathEscape(bob.ID)+"/displayname", bob.Token, map[string]any{"displayname": "Bobby"}).wantStatus(t, 200)
	ts.do(t, "PUT", covV3+"/profile/"+url.PathEscape(bob.ID)+"/avatar_url", bob.Token, map[string]any{"avatar_url": "mxc://test.local/bob"}).wantStatus(t, 200)
	rid := ts.createRoom(t, alice, map[string]any{"preset": "trusted_private_chat", "is_direct": true, "invite": []string{bob.ID}})
	r := ts.do(t, "GET", covRoomPath(rid)+"/state/m.room.member/"+url.PathEscape(bob.ID), alice.Token, nil)
	r.wantStatus(t, 200)
	if c := r.json(t); c["membership"] != "invite" || c["is_direct"] != true || c["displayname"] != "Bobby" || c["avatar_url"] != "mxc://test.local/bob" {
		t.Errorf("bob's invite event content = %v", c)
	}
}
