package matrix_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
)

// stateContent reads a state event's content as u.
func (ts *testServer) stateContent(t testing.TB, u *testUser, roomID, typ, sk string) map[string]any {
	t.Helper()
	r := ts.do(t, "GET", v3path+"/rooms/"+url.PathEscape(roomID)+"/state/"+typ+"/"+url.PathEscape(sk), u.Token, nil)
	r.wantStatus(t, 200)
	return r.json(t)
}

func (ts *testServer) upgrade(t testing.TB, u *testUser, roomID string, body map[string]any) *response {
	t.Helper()
	return ts.do(t, "POST", v3path+"/rooms/"+url.PathEscape(roomID)+"/upgrade", u.Token, body)
}

func (ts *testServer) join(t testing.TB, u *testUser, roomID string) {
	t.Helper()
	ts.do(t, "POST", v3path+"/join/"+url.PathEscape(roomID), u.Token, map[string]any{}).wantStatus(t, 200)
}

// TestUpgradeRoom: bad requests and users without the power to send a
// tombstone change nothing; an upgrade makes a room whose create event
// names its predecessor, carries the name, topic, join rules and power
// levels, takes the alias and the directory listing, and leaves the old
// room tombstoned with ordinary members silenced.
func TestUpgradeRoom(t *testing.T) {
	sp := loadSpec(t)
	ts := newTestServer(t)
	c := specChecker{ts, sp}
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	old := ts.createRoom(t, alice, map[string]any{"preset": "public_chat", "room_version": "10", "name": "Tea",
		"topic": "Cups", "room_alias_name": "tea", "visibility": "public"})
	ts.join(t, bob, old)
	before := ts.snapshot(t, alice, old)

	c.call(t, "POST", v3path+"/rooms/"+url.PathEscape(old)+"/upgrade", bob.Token, map[string]any{"new_version": "11"}).
		wantError(t, 403, "M_FORBIDDEN")
	c.call(t, "POST", v3path+"/rooms/"+url.PathEscape(old)+"/upgrade", alice.Token, map[string]any{"new_version": "99"}).
		wantError(t, 400, "M_UNSUPPORTED_ROOM_VERSION")
	ts.upgrade(t, alice, old, map[string]any{}).wantError(t, 400, "M_MISSING_PARAM")
	ts.upgrade(t, alice, old, map[string]any{"new_version": 11}).wantError(t, 400, "M_BAD_JSON")
	ts.upgrade(t, alice, "!nowhere:test.local", map[string]any{"new_version": "11"}).wantError(t, 403, "M_FORBIDDEN")
	if after := ts.snapshot(t, alice, old); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("refused upgrades changed the room:\n%v\n%v", before, after)
	}

	r := c.call(t, "POST", v3path+"/rooms/"+url.PathEscape(old)+"/upgrade", alice.Token, map[string]any{"new_version": "11"})
	r.wantStatus(t, 200)
	newID := r.str(t, "replacement_room")

	create := ts.stateContent(t, alice, newID, "m.room.create", "")
	pred, _ := create["predecessor"].(map[string]any)
	if create["room_version"] != "11" || pred["room_id"] != old || pred["event_id"] == nil || create["creator"] != nil {
		t.Errorf("new create content: %v", create)
	}
	if n := ts.stateContent(t, alice, newID, "m.room.name", ""); n["name"] != "Tea" {
		t.Errorf("name not carried: %v", n)
	}
	if n := ts.stateContent(t, alice, newID, "m.room.topic", ""); n["topic"] != "Cups" {
		t.Errorf("topic not carried: %v", n)
	}
	if n := ts.stateContent(t, alice, newID, "m.room.join_rules", ""); n["join_rule"] != "public" {
		t.Errorf("join rules not carried: %v", n)
	}
	pl := ts.stateContent(t, alice, newID, "m.room.power_levels", "")
	if users := pl["users"].(map[string]any); len(users) != 1 || users[alice.ID] != 100.0 {
		t.Errorf("new power levels users: %v", pl["users"])
	}
	if n := ts.stateContent(t, alice, newID, "m.room.canonical_alias", ""); n["alias"] != "#tea:test.local" {
		t.Errorf("canonical alias not carried: %v", n)
	}
	r = ts.do(t, "GET", v3path+"/directory/room/"+url.PathEscape("#tea:test.local"), "", nil)
	r.wantStatus(t, 200)
	if got := r.str(t, "room_id"); got != newID {
		t.Errorf("alias points at %s, want the new room %s", got, newID)
	}
	r = ts.do(t, "GET", v3path+"/publicRooms", "", nil)
	r.wantStatus(t, 200)
	var listed []string
	for _, x := range r.json(t)["chunk"].([]any) {
		listed = append(listed, x.(map[string]any)["room_id"].(string))
	}
	if fmt.Sprint(listed) != fmt.Sprint([]string{newID}) {
		t.Errorf("directory lists %v, want only the new room", listed)
	}

	tomb := ts.stateContent(t, bob, old, "m.room.tombstone", "")
	if tomb["replacement_room"] != newID {
		t.Errorf("tombstone: %v", tomb)
	}
	oldPL := ts.stateContent(t, alice, old, "m.room.power_levels", "")
	if oldPL["events_default"] != 50.0 || oldPL["invite"] != 50.0 {
		t.Errorf("old room power levels not restricted: %v", oldPL)
	}
	r = ts.do(t, "PUT", v3path+"/rooms/"+url.PathEscape(old)+"/send/m.room.message/t1", bob.Token, map[string]any{"msgtype": "m.text", "body": "hi"})
	r.wantError(t, 403, "M_FORBIDDEN")
	ts.join(t, bob, newID)
}

// TestUpgradeEveryVersion walks a room through every version, 1 to 12 and
// back to 1: each hop makes a valid room of the new version whose
// predecessor is the last, with the creator able to send in it.
func TestUpgradeEveryVersion(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	roomID := ts.createRoom(t, alice, map[string]any{"room_version": "1", "name": "Odyssey"})
	for _, v := range []string{"2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "1"} {
		r := ts.upgrade(t, alice, roomID, map[string]any{"new_version": v})
		r.wantStatus(t, 200)
		next := r.str(t, "replacement_room")
		create := ts.stateContent(t, alice, next, "m.room.create", "")
		pred, _ := create["predecessor"].(map[string]any)
		if create["room_version"] != v || pred["room_id"] != roomID {
			t.Fatalf("v%s: create content %v", v, create)
		}
		if (v == "12") != (pred["event_id"] == nil) {
			t.Errorf("v%s: predecessor %v: event_id wanted for every version but 12", v, pred)
		}
		if n := ts.stateContent(t, alice, next, "m.room.name", ""); n["name"] != "Odyssey" {
			t.Errorf("v%s: name %v", v, n)
		}
		ts.send(t, alice, next, "m"+v, "hello in v"+v)
		roomID = next
	}
}

// TestUpgradeCreators follows room v12's creator rules: creators are never
// listed in the new power levels' users, additional_creators lands in the
// create event, and moving a v12 room to v11 gives its creators the
// highest safe level (and anyone who had that level one less).
func TestUpgradeCreators(t *testing.T) {
	const maxSafe = 1<<53 - 1
	ts := newTestServer(t)
	alice, bob, carol := ts.register(t, "alice"), ts.register(t, "bob"), ts.register(t, "carol")
	setUsers := func(roomID string, users map[string]any) {
		ts.do(t, "PUT", v3path+"/rooms/"+url.PathEscape(roomID)+"/state/m.room.power_levels/", alice.Token,
			map[string]any{"users": users}).wantStatus(t, 200)
	}

	v11 := ts.createRoom(t, alice, map[string]any{"room_version": "11", "preset": "public_chat"})
	ts.join(t, bob, v11)
	ts.join(t, carol, v11)
	setUsers(v11, map[string]any{alice.ID: 100, bob.ID: 100, carol.ID: 50})
	r := ts.upgrade(t, alice, v11, map[string]any{"new_version": "12", "additional_creators": []string{bob.ID}})
	r.wantStatus(t, 200)
	v12 := r.str(t, "replacement_room")
	create := ts.stateContent(t, alice, v12, "m.room.create", "")
	if fmt.Sprint(create["additional_creators"]) != fmt.Sprint([]any{bob.ID}) {
		t.Errorf("v12 create content: %v", create)
	}
	if users := ts.stateContent(t, alice, v12, "m.room.power_levels", "")["users"]; fmt.Sprint(users) != fmt.Sprint(map[string]any{carol.ID: 50.0}) {
		t.Errorf("v11→v12 users %v, want only carol at 50", users)
	}
	ts.upgrade(t, alice, v11, map[string]any{"new_version": "12", "additional_creators": []string{"not-a-user"}}).
		wantError(t, 400, "M_INVALID_PARAM")

	ts.join(t, bob, v12)
	ts.join(t, carol, v12)
	ts.do(t, "PUT", v3path+"/rooms/"+url.PathEscape(v12)+"/state/m.room.power_levels/", alice.Token,
		map[string]any{"users": map[string]any{carol.ID: maxSafe}}).wantStatus(t, 200)
	r = ts.upgrade(t, bob, v12, map[string]any{"new_version": "11"})
	r.wantStatus(t, 200)
	back := r.str(t, "replacement_room")
	users := ts.stateContent(t, bob, back, "m.room.power_levels", "")["users"].(map[string]any)
	want := map[string]any{alice.ID: float64(maxSafe), bob.ID: float64(maxSafe), carol.ID: float64(maxSafe - 1)}
	if fmt.Sprint(users) != fmt.Sprint(want) {
		t.Errorf("v12→v11 users %v, want %v", users, want)
	}
	ts.send(t, bob, back, "b1", "bob still commands the room")
}

// TestUpgradeByModerator: a moderator allowed to send the tombstone but
// not power levels or history visibility still carries all the state
// over (raised while copying) and ends at their old level.
func TestUpgradeByModerator(t *testing.T) {
	ts := newTestServer(t)
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	old := ts.createRoom(t, alice, map[string]any{"room_version": "10", "preset": "public_chat",
		"initial_state": []map[string]any{{"type": "m.room.history_visibility", "state_key": "",
			"content": map[string]any{"history_visibility": "world_readable"}}}})
	ts.join(t, bob, old)
	ts.do(t, "PUT", v3path+"/rooms/"+url.PathEscape(old)+"/state/m.room.power_levels/", alice.Token, map[string]any{
		"users": map[string]any{alice.ID: 100, bob.ID: 50}, "state_default": 50,
		"events": map[string]any{"m.room.tombstone": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100},
	}).wantStatus(t, 200)
	r := ts.upgrade(t, bob, old, map[string]any{"new_version": "11"})
	r.wantStatus(t, 200)
	newID := r.str(t, "replacement_room")
	if hv := ts.stateContent(t, bob, newID, "m.room.history_visibility", ""); hv["history_visibility"] != "world_readable" {
		t.Errorf("history visibility not carried: %v", hv)
	}
	pl := ts.stateContent(t, bob, newID, "m.room.power_levels", "")
	want := map[string]any{alice.ID: 100.0, bob.ID: 50.0}
	if fmt.Sprint(pl["users"]) != fmt.Sprint(want) {
		t.Errorf("final users %v, want %v", pl["users"], want)
	}
	if ev := pl["events"].(map[string]any); ev["m.room.tombstone"] != 50.0 {
		t.Errorf("events levels not carried: %v", ev)
	}
}

// TestUpgradeCarriesPushRules: both local members' room rule for the old
// room, and bob's mute (an override rule named after the room matching
// its room_id), reappear for the new room; an unrelated rule does not.
// Bob's tags on the old room are on the new one too.
func TestUpgradeCarriesPushRules(t *testing.T) {
	ps := newPushServer(t)
	ts := ps.testServer
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	old := ts.createRoom(t, alice, map[string]any{"preset": "public_chat", "room_version": "10"})
	ts.join(t, bob, old)
	rule := func(u *testUser, kind, id string, body map[string]any) *response {
		return ts.do(t, "PUT", pushV3+"/pushrules/global/"+kind+"/"+url.PathEscape(id), u.Token, body)
	}
	for _, u := range []*testUser{alice, bob} {
		rule(u, "room", old, map[string]any{"actions": []string{"dont_notify"}}).wantStatus(t, 200)
	}
	rule(bob, "override", old, map[string]any{"actions": []any{},
		"conditions": []map[string]any{{"kind": "event_match", "key": "room_id", "pattern": old}}}).wantStatus(t, 200)
	rule(bob, "override", "unrelated", map[string]any{"actions": []any{},
		"conditions": []map[string]any{{"kind": "event_match", "key": "content.body", "pattern": "spoiler"}}}).wantStatus(t, 200)

	tagPath := func(u *testUser, roomID string) string {
		return pushV3 + "/user/" + url.PathEscape(u.ID) + "/rooms/" + url.PathEscape(roomID) + "/account_data/m.tag"
	}
	ts.do(t, "PUT", tagPath(bob, old), bob.Token, map[string]any{"tags": map[string]any{"m.favourite": map[string]any{}}}).wantStatus(t, 200)

	r := ts.upgrade(t, alice, old, map[string]any{"new_version": "11"})
	r.wantStatus(t, 200)
	newID := r.str(t, "replacement_room")
	r = ts.do(t, "GET", tagPath(bob, newID), bob.Token, nil)
	r.wantStatus(t, 200)
	if _, ok := r.json(t)["tags"].(map[string]any)["m.favourite"]; !ok {
		t.Errorf("bob's tags on the new room: %s", r.Body)
	}
	for _, u := range []*testUser{alice, bob} {
		r := ts.do(t, "GET", pushV3+"/pushrules/global/room/"+url.PathEscape(newID), u.Token, nil)
		r.wantStatus(t, 200)
		if a := fmt.Sprint(r.json(t)["actions"]); a != "[dont_notify]" {
			t.Errorf("%s's room rule for the new room: actions %s", u.ID, a)
		}
	}
	r = ts.do(t, "GET", pushV3+"/pushrules/global/override/"+url.PathEscape(newID), bob.Token, nil)
	r.wantStatus(t, 200)
	conds := r.json(t)["conditions"].([]any)
	if len(conds) != 1 || conds[0].(map[string]any)["pattern"] != newID {
		t.Errorf("bob's mute for the new room: %s", r.Body)
	}
	n := 0
	for _, id := range ruleIDs(t, ps, bob, "override") {
		if strings.Contains(id, "unrelated") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the unrelated override rule is there %d times, want once", n)
	}
}

// TestJoinUpgradedRoomCarriesPushRules: carol, who left the old room
// before the upgrade, gets her room rule and tags for it when she joins
// the new room; a rule she already set for the new room is kept.
func TestJoinUpgradedRoomCarriesPushRules(t *testing.T) {
	ps := newPushServer(t)
	ts := ps.testServer
	alice, carol, dan := ts.register(t, "alice"), ts.register(t, "carol"), ts.register(t, "dan")
	old := ts.createRoom(t, alice, map[string]any{"preset": "public_chat", "room_version": "10"})
	for _, u := range []*testUser{carol, dan} {
		ts.join(t, u, old)
		ts.do(t, "PUT", pushV3+"/pushrules/global/room/"+url.PathEscape(old), u.Token,
			map[string]any{"actions": []string{"dont_notify"}}).wantStatus(t, 200)
		ts.do(t, "POST", v3path+"/rooms/"+url.PathEscape(old)+"/leave", u.Token, map[string]any{}).wantStatus(t, 200)
	}
	ts.do(t, "PUT", pushV3+"/user/"+url.PathEscape(carol.ID)+"/rooms/"+url.PathEscape(old)+"/account_data/m.tag", carol.Token,
		map[string]any{"tags": map[string]any{"u.work": map[string]any{}}}).wantStatus(t, 200)
	r := ts.upgrade(t, alice, old, map[string]any{"new_version": "11"})
	r.wantStatus(t, 200)
	newID := r.str(t, "replacement_room")
	ts.do(t, "GET", pushV3+"/pushrules/global/room/"+url.PathEscape(newID), carol.Token, nil).wantError(t, 404, "M_NOT_FOUND")
	// dan chose already, before joining.
	ts.do(t, "PUT", pushV3+"/pushrules/global/room/"+url.PathEscape(newID), dan.Token,
		map[string]any{"actions": []string{"notify"}}).wantStatus(t, 200)

	for _, u := range []*testUser{carol, dan} {
		ts.join(t, u, newID)
	}
	r = ts.do(t, "GET", pushV3+"/pushrules/global/room/"+url.PathEscape(newID), carol.Token, nil)
	r.wantStatus(t, 200)
	if a := fmt.Sprint(r.json(t)["actions"]); a != "[dont_notify]" {
		t.Errorf("carol's rule for the new room after joining: %s", r.Body)
	}
	r = ts.do(t, "GET", pushV3+"/user/"+url.PathEscape(carol.ID)+"/rooms/"+url.PathEscape(newID)+"/account_data/m.tag", carol.Token, nil)
	r.wantStatus(t, 200)
	if _, ok := r.json(t)["tags"].(map[string]any)["u.work"]; !ok {
		t.Errorf("carol's tags on the new room: %s", r.Body)
	}
	r = ts.do(t, "GET", pushV3+"/pushrules/global/room/"+url.PathEscape(newID), dan.Token, nil)
	r.wantStatus(t, 200)
	if a := fmt.Sprint(r.json(t)["actions"]); a != "[notify]" {
		t.Errorf("dan's own rule for the new room was overwritten: %s", r.Body)
	}
}
