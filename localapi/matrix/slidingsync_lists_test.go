package matrix_test

import (
	"encoding/json"
	"net/url"
	"slices"
	"testing"
)

// Sliding sync lists: filters, invites, and rooms the user is not (or no longer) in.

// TestSlidingSyncInviteList: an invite appears in an is_invite list with
// its stripped state, and not in the is_invite: false list.
func TestSlidingSyncInviteList(t *testing.T) {
	ts := newTestServer(t)
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	ts.createRoom(t, bob, nil)
	body := map[string]any{"lists": map[string]any{
		"invites": ssList([][2]int{{0, 9}}, 1, map[string]any{"filters": map[string]any{"is_invite": true}}),
		"rooms":   ssList([][2]int{{0, 9}}, 1, map[string]any{"filters": map[string]any{"is_invite": false}}),
	}}
	r1 := ts.ssOK(t, bob, "", -1, body)
	if r1.Lists["invites"].Count != 0 || r1.Lists["rooms"].Count != 1 {
		t.Fatalf("counts before: %+v", r1.Lists)
	}
	roomID := ts.createRoom(t, alice, map[string]any{"name": "party", "invite": []string{bob.ID}})
	r2 := ts.ssOK(t, bob, r1.Pos, 30000, body)
	if r2.Lists["invites"].Count != 1 || r2.Lists["rooms"].Count != 1 {
		t.Fatalf("counts after: %+v", r2.Lists)
	}
	rm, ok := r2.Rooms[roomID]
	if !ok || rm.Membership != "invite" || len(rm.InviteState) == 0 || len(rm.Lists) != 1 || rm.Lists[0] != "invites" ||
		len(rm.Timeline) != 0 {
		t.Fatalf("invite room: %+v", r2.Rooms)
	}
	var hasName bool
	for _, raw := range rm.InviteState {
		var ev ssEvent
		json.Unmarshal(raw, &ev)
		hasName = hasName || (ev.Type == "m.room.name" && string(ev.Content) != "")
	}
	if !hasName {
		t.Fatalf("invite_state lacks the room name: %s", rm.InviteState)
	}
	// Accepting the invite sends the room whole again (initial), joined,
	// now in the other list.
	ts.join(t, bob, roomID)
	r3 := ts.ssOK(t, bob, r2.Pos, 30000, body)
	rm, ok = r3.Rooms[roomID]
	if !ok || !rm.Initial || rm.Membership != "join" || len(rm.InviteState) != 0 || len(rm.Timeline) != 1 ||
		rm.Name == nil || *rm.Name != "party" || len(rm.Lists) != 1 || rm.Lists[0] != "rooms" {
		t.Fatalf("joined room: %+v", r3.Rooms)
	}
}

// TestSlidingSyncFilters: is_dm follows m.direct (and a room that becomes
// a DM is sent again with is_dm), is_encrypted, room_types with null for
// untyped rooms, not_room_types, and spaces (the space's m.space.child
// rooms, not the space itself).
func TestSlidingSyncFilters(t *testing.T) {
	ts := newTestServer(t)
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	dm := ts.createRoom(t, alice, map[string]any{"is_direct": true, "invite": []string{bob.ID}})
	plain := ts.createRoom(t, alice, nil)
	enc := ts.createRoom(t, alice, map[string]any{"initial_state": []any{map[string]any{
		"type": "m.room.encryption", "state_key": "", "content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}}}})
	space := ts.createRoom(t, alice, map[string]any{"creation_content": map[string]any{"type": "m.space"}})
	ts.putState(t, alice, space, "m.space.child", plain, map[string]any{"via": []string{testServerName}})
	direct := func(rooms ...string) {
		ts.do(t, "PUT", v3path+"/user/"+url.PathEscape(alice.ID)+"/account_data/m.direct", alice.Token,
			map[string]any{bob.ID: rooms}).wantStatus(t, 200)
	}
	direct(dm)
	f := func(filters map[string]any) map[string]any {
		return ssList([][2]int{{0, 9}}, 0, map[string]any{"filters": filters})
	}
	body := map[string]any{"lists": map[string]any{
		"dms":       f(map[string]any{"is_dm": true}),
		"not-dms":   f(map[string]any{"is_dm": false}),
		"encrypted": f(map[string]any{"is_encrypted": true}),
		"spaces":    f(map[string]any{"room_types": []any{"m.space"}}),
		"untyped":   f(map[string]any{"room_types": []any{nil}}),
		"no-spaces": f(map[string]any{"not_room_types": []any{"m.space"}}),
		"in-space":  f(map[string]any{"spaces": []string{space}}),
	}}
	r1 := ts.ssOK(t, alice, "", -1, body)
	want := map[string][]string{"dms": {dm}, "not-dms": {plain, enc, space}, "encrypted": {enc}, "spaces": {space},
		"untyped": {dm, plain, enc}, "no-spaces": {dm, plain, enc}, "in-space": {plain}}
	for list, rooms := range want {
		if got := r1.Lists[list].Count; got != len(rooms) {
			t.Errorf("list %s: count %d, want %d", list, got, len(rooms))
		}
		for _, id := range rooms {
			if !slices.Contains(r1.Rooms[id].Lists, list) {
				t.Errorf("room %s is not in list %s: %v", id, list, r1.Rooms[id].Lists)
			}
		}
	}
	if r1.Rooms[dm].IsDM == nil || !*r1.Rooms[dm].IsDM || r1.Rooms[plain].IsDM == nil || *r1.Rooms[plain].IsDM {
		t.Fatalf("is_dm: dm %v, plain %v", r1.Rooms[dm].IsDM, r1.Rooms[plain].IsDM)
	}
	direct(dm, plain)
	r2 := ts.ssOK(t, alice, r1.Pos, 30000, body)
	if r2.Lists["dms"].Count != 2 || r2.Rooms[plain].IsDM == nil || !*r2.Rooms[plain].IsDM {
		t.Fatalf("after m.direct changed: lists %+v, plain %+v", r2.Lists, r2.Rooms[plain])
	}
}

// TestSlidingSyncIgnoredInvite: an invite from a user in the account's
// m.ignored_user_list is not listed; another user's is.
func TestSlidingSyncIgnoredInvite(t *testing.T) {
	ts := newTestServer(t)
	alice, bob, carol := ts.register(t, "alice"), ts.register(t, "bob"), ts.register(t, "carol")
	ts.do(t, "PUT", v3path+"/user/"+url.PathEscape(alice.ID)+"/account_data/m.ignored_user_list", alice.Token,
		map[string]any{"ignored_users": map[string]any{bob.ID: map[string]any{}}}).wantStatus(t, 200)
	fromBob := ts.createRoom(t, bob, map[string]any{"invite": []string{alice.ID}})
	fromCarol := ts.createRoom(t, carol, map[string]any{"invite": []string{alice.ID}})
	r := ts.ssOK(t, alice, "", -1, map[string]any{"lists": map[string]any{
		"invites": ssList([][2]int{{0, 9}}, 1, map[string]any{"filters": map[string]any{"is_invite": true}})}})
	if _, ok := r.Rooms[fromBob]; ok || r.Lists["invites"].Count != 1 {
		t.Fatalf("invites: count %d, rooms %v", r.Lists["invites"].Count, r.Rooms)
	}
	if _, ok := r.Rooms[fromCarol]; !ok {
		t.Fatalf("carol's invite is missing: %v", r.Rooms)
	}
}

// TestSlidingSyncFilteredInvite: an invite the account's MSC4155 invite
// filter ignores is not listed, as /sync hides it; another is.
func TestSlidingSyncFilteredInvite(t *testing.T) {
	ts := newTestServer(t)
	alice, bob, carol := ts.register(t, "alice"), ts.register(t, "bob"), ts.register(t, "carol")
	fromBob := ts.createRoom(t, bob, map[string]any{})
	ts.setInviteConfig(t, alice, map[string]any{"ignored_users": []string{bob.ID}})
	ts.do(t, "POST", v3path+"/rooms/"+url.PathEscape(fromBob)+"/invite", bob.Token, map[string]any{"user_id": alice.ID}).wantStatus(t, 200)
	fromCarol := ts.createRoom(t, carol, map[string]any{"invite": []string{alice.ID}})
	r := ts.ssOK(t, alice, "", -1, map[string]any{"lists": map[string]any{
		"invites": ssList([][2]int{{0, 9}}, 1, map[string]any{"filters": map[string]any{"is_invite": true}})}})
	if _, ok := r.Rooms[fromBob]; ok || r.Lists["invites"].Count != 1 {
		t.Fatalf("invites: count %d, rooms %v", r.Lists["invites"].Count, r.Rooms)
	}
	if _, ok := r.Rooms[fromCarol]; !ok {
		t.Fatalf("carol's invite is missing: %v", r.Rooms)
	}
}

// TestSlidingSyncSubscriptionNotMember: a subscription to a room the user
// is not in (public or not), or to one that does not exist, returns
// nothing of it (MSC4186 §"Subscriptions").
func TestSlidingSyncSubscriptionNotMember(t *testing.T) {
	ts := newTestServer(t)
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	public := ts.createRoom(t, bob, map[string]any{"preset": "public_chat", "name": "secret plans"})
	ts.send(t, bob, public, "s", "not for alice")
	sub := map[string]any{"timeline_limit": 5, "required_state": [][]string{{"*", "*"}}}
	r := ts.ssOK(t, alice, "", -1, map[string]any{"room_subscriptions": map[string]any{
		public: sub, "!nowhere:test.local": sub}})
	if len(r.Rooms) != 0 {
		t.Fatalf("rooms of others: %+v", r.Rooms)
	}
}

// TestSlidingSyncLeftRoomHeroesAtLeave: for a room the user was kicked
// from, heroes and the joined count are those of the state at the kick,
// as its timeline and required_state are: a member who joined after the
// kick is not shown to the kicked user.
func TestSlidingSyncLeftRoomHeroesAtLeave(t *testing.T) {
	ts := newTestServer(t)
	alice, bob, carol := ts.register(t, "alice"), ts.register(t, "bob"), ts.register(t, "carol")
	roomID := ts.createRoom(t, bob, map[string]any{"preset": "private_chat", "invite": []string{alice.ID}})
	rooms := covV3 + "/rooms/" + url.PathEscape(roomID)
	ts.join(t, alice, roomID)
	ts.do(t, "POST", rooms+"/kick", bob.Token, map[string]any{"user_id": alice.ID}).wantStatus(t, 200)
	ts.do(t, "POST", rooms+"/invite", bob.Token, map[string]any{"user_id": carol.ID}).wantStatus(t, 200)
	ts.join(t, carol, roomID)

	r := ts.ssOK(t, alice, "", -1, map[string]any{"room_subscriptions": map[string]any{
		roomID: map[string]any{"timeline_limit": 5, "required_state": [][]string{}}}})
	rm, ok := r.Rooms[roomID]
	if !ok || rm.Membership != "leave" {
		t.Fatalf("left room: %+v (present %v)", rm, ok)
	}
	var heroes []string
	for _, h := range rm.Heroes {
		heroes = append(heroes, h.UserID)
	}
	if !slices.Equal(heroes, []string{bob.ID}) {
		t.Errorf("heroes %v, want only bob (carol joined after the kick)", heroes)
	}
	if rm.JoinedCount == nil {
		t.Errorf("no joined_count")
	} else if *rm.JoinedCount != 1 {
		t.Errorf("joined_count %d, want 1 (bob, at the kick)", *rm.JoinedCount)
	}
}
