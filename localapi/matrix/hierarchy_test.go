package matrix_test

import (
	"fmt"
	"net/url"
	"testing"
)

func (ts *testServer) putState(t testing.TB, u *testUser, roomID, typ, sk string, content map[string]any) {
	t.Helper()
	ts.do(t, "PUT", v3path+"/rooms/"+url.PathEscape(roomID)+"/state/"+typ+"/"+url.PathEscape(sk), u.Token, content).wantStatus(t, 200)
}

func (c specChecker) hierarchy(t *testing.T, u *testUser, roomID, query string) *response {
	t.Helper()
	return c.call(t, "GET", "/_matrix/client/v1/rooms/"+url.PathEscape(roomID)+"/hierarchy"+query, u.Token, nil)
}

// roomIDs lists the room_id of each room in a hierarchy page.
func roomIDs(t *testing.T, r *response) []string {
	t.Helper()
	var out []string
	for _, x := range r.json(t)["rooms"].([]any) {
		out = append(out, x.(map[string]any)["room_id"].(string))
	}
	return out
}

// TestSpaceHierarchyWalk builds
//
//	Root ─┬─ R1
//	      ├─ SS1 ── SS2 ─┬─ R3
//	      │              └─ R4 (bob's, world-readable; alice is not in it)
//	      └─ R2 ── R5 (R2 is no space: its child link is ignored)
//
// and checks the depth-first order given by the children's order keys,
// pagination with limit and next_batch, max_depth, suggested_only, a link
// without via, and every response against the spec.
func TestSpaceHierarchyWalk(t *testing.T) {
	sp := loadSpec(t)
	ts := newTestServer(t)
	c := specChecker{ts, sp}
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	space := map[string]any{"type": "m.space"}
	mk := func(u *testUser, name string, extra map[string]any) string {
		body := map[string]any{"preset": "public_chat", "name": name}
		for k, v := range extra {
			body[k] = v
		}
		return ts.createRoom(t, u, body)
	}
	root := mk(alice, "Root", map[string]any{"creation_content": space})
	r1 := mk(alice, "R1", nil)
	ss1 := mk(alice, "SS1", map[string]any{"creation_content": space, "topic": "sub-space"})
	r2 := mk(alice, "R2", nil)
	ss2 := mk(alice, "SS2", map[string]any{"creation_content": space})
	r3 := mk(alice, "R3", nil)
	r4 := mk(bob, "R4", map[string]any{"initial_state": []map[string]any{{"type": "m.room.history_visibility",
		"state_key": "", "content": map[string]any{"history_visibility": "world_readable"}}}})
	r5 := mk(alice, "R5", nil)
	link := func(parent, child, order string, suggested bool) {
		ts.putState(t, alice, parent, "m.space.child", child, map[string]any{"via": []string{"test.local"}, "order": order, "suggested": suggested})
	}
	// Sent out of order: the order keys decide.
	link(root, r2, "c", true)
	link(root, r1, "a", false)
	link(root, ss1, "b", false)
	link(ss1, ss2, "a", false)
	link(ss2, r4, "b", false)
	link(ss2, r3, "a", false)
	link(r2, r5, "a", false)
	link(ss1, r2, "z", false) // R2 twice in the tree: listed once
	ts.putState(t, alice, root, "m.space.child", "!gone:test.local", map[string]any{})

	r := c.hierarchy(t, alice, root, "")
	r.wantStatus(t, 200)
	if got, want := roomIDs(t, r), []string{root, r1, ss1, ss2, r3, r4, r2}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("whole walk %v, want %v", got, want)
	}
	if _, ok := r.json(t)["next_batch"]; ok {
		t.Errorf("next_batch on the last page: %s", r.Body)
	}
	first := r.json(t)["rooms"].([]any)[0].(map[string]any)
	if first["name"] != "Root" || first["room_type"] != "m.space" || first["join_rule"] != "public" {
		t.Errorf("root summary: %v", first)
	}
	if cs := first["children_state"].([]any); len(cs) != 3 || cs[0].(map[string]any)["state_key"] != r1 || cs[0].(map[string]any)["origin_server_ts"] == nil {
		t.Errorf("root children_state: %v", cs)
	}

	r = c.hierarchy(t, alice, root, "?limit=7")
	if _, ok := r.json(t)["next_batch"]; ok || len(roomIDs(t, r)) != 7 {
		t.Errorf("a page holding the whole tree: %s", r.Body)
	}

	r = c.hierarchy(t, alice, root, "?limit=4")
	r.wantStatus(t, 200)
	if got, want := roomIDs(t, r), []string{root, r1, ss1, ss2}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("first page %v, want %v", got, want)
	}
	next := r.str(t, "next_batch")
	c.hierarchy(t, alice, root, "?limit=4&suggested_only=true&from="+url.QueryEscape(next)).wantError(t, 400, "M_INVALID_PARAM")
	ts.do(t, "GET", "/_matrix/client/v1/rooms/"+url.PathEscape(root)+"/hierarchy?from="+url.QueryEscape(next), bob.Token, nil).
		wantError(t, 400, "M_INVALID_PARAM") // another user's token
	r = c.hierarchy(t, alice, root, "?limit=4&from="+url.QueryEscape(next))
	r.wantStatus(t, 200)
	if got, want := roomIDs(t, r), []string{r3, r4, r2}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("second page %v, want %v", got, want)
	}

	r = c.hierarchy(t, alice, root, "?max_depth=1")
	r.wantStatus(t, 200)
	if got, want := roomIDs(t, r), []string{root, r1, ss1, r2}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("max_depth=1 %v, want %v", got, want)
	}
	if cs := r.json(t)["rooms"].([]any)[2].(map[string]any)["children_state"].([]any); len(cs) != 0 {
		t.Errorf("children_state past max_depth: %v", cs)
	}
	r = c.hierarchy(t, alice, root, "?suggested_only=true")
	r.wantStatus(t, 200)
	if got, want := roomIDs(t, r), []string{root, r2}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("suggested_only %v, want %v", got, want)
	}

	// Unlinking SS1 (content without via) drops its whole branch.
	ts.putState(t, alice, root, "m.space.child", ss1, map[string]any{})
	r = c.hierarchy(t, alice, root, "")
	if got, want := roomIDs(t, r), []string{root, r1, r2}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after unlinking SS1: %v, want %v", got, want)
	}

	for _, q := range []string{"?from=nonsense", "?limit=0", "?limit=x", "?max_depth=-1"} {
		c.hierarchy(t, alice, root, q).wantError(t, 400, "M_INVALID_PARAM")
	}
}

// TestSpaceHierarchyAccess: a user sees only the rooms they may join or
// peek: an invite-only child appears once they are invited, a restricted
// child once they are in one of its allowed rooms; an invite-only space
// they are not in is 403, as is an unknown room.
func TestSpaceHierarchyAccess(t *testing.T) {
	sp := loadSpec(t)
	ts := newTestServer(t)
	c := specChecker{ts, sp}
	alice, carol := ts.register(t, "alice"), ts.register(t, "carol")
	space := map[string]any{"type": "m.space"}
	root := ts.createRoom(t, alice, map[string]any{"preset": "public_chat", "creation_content": space})
	private := ts.createRoom(t, alice, map[string]any{"preset": "private_chat"})
	restricted := ts.createRoom(t, alice, map[string]any{"preset": "private_chat", "room_version": "10",
		"initial_state": []map[string]any{{"type": "m.room.join_rules", "state_key": "",
			"content": map[string]any{"join_rule": "restricted", "allow": []map[string]any{{"type": "m.room_membership", "room_id": root}}}}}})
	hidden := ts.createRoom(t, alice, map[string]any{"preset": "private_chat", "creation_content": space})
	for i, child := range []string{private, restricted} {
		ts.putState(t, alice, root, "m.space.child", child, map[string]any{"via": []string{"test.local"}, "order": fmt.Sprint(i)})
	}

	r := c.hierarchy(t, carol, root, "")
	r.wantStatus(t, 200)
	if got, want := roomIDs(t, r), []string{root}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("carol outside everything sees %v, want %v", got, want)
	}
	ts.join(t, carol, root)
	ts.do(t, "POST", v3path+"/rooms/"+url.PathEscape(private)+"/invite", alice.Token, map[string]any{"user_id": carol.ID}).wantStatus(t, 200)
	r = c.hierarchy(t, carol, root, "")
	if got, want := roomIDs(t, r), []string{root, private, restricted}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("carol joined to the space and invited sees %v, want %v", got, want)
	}
	if rm := r.json(t)["rooms"].([]any)[2].(map[string]any); fmt.Sprint(rm["allowed_room_ids"]) != fmt.Sprint([]any{root}) {
		t.Errorf("restricted room's allowed_room_ids: %v", rm)
	}
	c.hierarchy(t, carol, hidden, "").wantError(t, 403, "M_FORBIDDEN")
	c.hierarchy(t, carol, "!nowhere:test.local", "").wantError(t, 403, "M_FORBIDDEN")
}
