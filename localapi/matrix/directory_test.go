package matrix_test

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// TestAliases covers PUT, GET and DELETE /directory/room/{roomAlias} and
// GET /rooms/{roomId}/aliases (directory.yaml).
func TestAliases(t *testing.T) {
	ts := newTestServer(t)
	alice, bob, mod, eve := ts.register(t, "alice"), ts.register(t, "bob"), ts.register(t, "mod"), ts.register(t, "eve")
	rid := ts.createRoom(t, alice, map[string]any{"preset": "public_chat",
		"power_level_content_override": map[string]any{"users": map[string]any{alice.ID: 100, mod.ID: 50}}})
	covJoin(t, ts, bob, rid)
	covJoin(t, ts, mod, rid)
	other := ts.createRoom(t, bob, nil)

	aliasPath := func(a string) string { return covV3 + "/directory/room/" + url.PathEscape(a) }
	put := func(u *testUser, alias, roomID string) *response {
		return ts.do(t, "PUT", aliasPath(alias), u.Token, map[string]any{"room_id": roomID})
	}
	resolves := func(alias, roomID string) {
		t.Helper()
		r := ts.do(t, "GET", aliasPath(alias), "", nil)
		if roomID == "" {
			r.wantError(t, 404, "M_NOT_FOUND")
			return
		}
		r.wantStatus(t, 200)
		m := r.json(t)
		if m["room_id"] != roomID {
			t.Errorf("GET %s: room_id %v, want %s", alias, m["room_id"], roomID)
		}
		if servers, _ := m["servers"].([]any); !slices.Contains(servers, any(testServerName)) {
			t.Errorf("GET %s: servers %v lack %s", alias, m["servers"], testServerName)
		}
	}
	listed := func(u *testUser) []string {
		t.Helper()
		r := ts.do(t, "GET", covRoomPath(rid)+"/aliases", u.Token, nil)
		r.wantStatus(t, 200)
		var out []string
		for _, a := range r.json(t)["aliases"].([]any) {
			out = append(out, a.(string))
		}
		return covSorted(out)
	}

	kitchen := "#kitchen:" + testServerName
	pantry := "#pantry:" + testServerName
	cellar := "#cellar:" + testServerName

	put(alice, kitchen, rid).wantStatus(t, 200)
	resolves(kitchen, rid)
	put(alice, kitchen, rid).wantStatus(t, 409)
	put(bob, kitchen, other).wantStatus(t, 409)
	resolves(kitchen, rid) // the refused PUTs changed nothing
	put(alice, "#kitchen:elsewhere.example", rid).wantError(t, 400, "M_INVALID_PARAM")
	resolves("#kitchen:elsewhere.example", "")
	put(alice, "kitchen:"+testServerName, rid).wantError(t, 400, "M_INVALID_PARAM")

	put(bob, pantry, rid).wantStatus(t, 200)
	put(alice, cellar, rid).wantStatus(t, 200)
	if got, want := listed(bob), covSorted([]string{kitchen, pantry, cellar}); !slices.Equal(got, want) {
		t.Errorf("aliases of the room: %v, want %v", got, want)
	}
	ts.do(t, "GET", covRoomPath(rid)+"/aliases", eve.Token, nil).wantError(t, 403, "M_FORBIDDEN")

	// Deleting: a plain member may not delete someone else's alias.
	ts.do(t, "DELETE", aliasPath(kitchen), bob.Token, nil).wantError(t, 403, "M_FORBIDDEN")
	ts.do(t, "DELETE", aliasPath(kitchen), eve.Token, nil).wantError(t, 403, "M_FORBIDDEN")
	resolves(kitchen, rid)
	// Its creator may, even without power.
	ts.do(t, "DELETE", aliasPath(pantry), bob.Token, nil).wantStatus(t, 200)
	resolves(pantry, "")
	// A moderator (power ≥ state_default) may delete anyone's.
	ts.do(t, "DELETE", aliasPath(kitchen), mod.Token, nil).wantStatus(t, 200)
	resolves(kitchen, "")
	ts.do(t, "DELETE", aliasPath(kitchen), mod.Token, nil).wantError(t, 404, "M_NOT_FOUND")
	if got := listed(alice); !slices.Equal(got, []string{cellar}) {
		t.Errorf("aliases after deletes: %v, want [%s]", got, cellar)
	}
	ts.do(t, "DELETE", aliasPath(cellar), alice.Token, nil).wantStatus(t, 200)
	if got := listed(alice); len(got) != 0 {
		t.Errorf("aliases after deleting all: %v", got)
	}
	// A freed alias can be taken again, for another room.
	put(bob, kitchen, other).wantStatus(t, 200)
	resolves(kitchen, other)
}

// TestRoomDirectory covers GET/PUT /directory/list/room/{roomId} and
// GET/POST /publicRooms (list_public_rooms.yaml).
func TestRoomDirectory(t *testing.T) {
	ts := newTestServer(t)
	alice, bob, carol := ts.register(t, "alice"), ts.register(t, "bob"), ts.register(t, "carol")
	visPath := func(id string) string { return covV3 + "/directory/list/room/" + url.PathEscape(id) }
	visibility := func(id string) string {
		t.Helper()
		r := ts.do(t, "GET", visPath(id), "", nil)
		r.wantStatus(t, 200)
		return r.str(t, "visibility")
	}
	publish := func(u *testUser, id, vis string) *response {
		return ts.do(t, "PUT", visPath(id), u.Token, map[string]any{"visibility": vis})
	}

	var gardens, all []string
	for i := range 5 {
		id := ts.createRoom(t, alice, map[string]any{"preset": "public_chat", "name": fmt.Sprintf("Herb Garden %d", i)})
		gardens, all = append(gardens, id), append(all, id)
	}
	kitchen := ts.createRoom(t, alice, map[string]any{"preset": "public_chat", "name": "Kitchen",
		"topic": "where the GARDEN produce goes"})
	gardens, all = append(gardens, kitchen), append(all, kitchen)
	for i := range 2 {
		id := ts.createRoom(t, alice, map[string]any{"preset": "public_chat", "name": fmt.Sprintf("Workshop %d", i)})
		all = append(all, id)
	}
	hidden := ts.createRoom(t, alice, map[string]any{"preset": "public_chat", "name": "Secret Garden"})

	if v := visibility(all[0]); v != "private" {
		t.Fatalf("visibility before publishing: %q, want private", v)
	}
	covJoin(t, ts, bob, all[0])
	publish(bob, all[0], "public").wantError(t, 403, "M_FORBIDDEN")   // a member without power
	publish(carol, all[0], "public").wantError(t, 403, "M_FORBIDDEN") // not in the room
	if v := visibility(all[0]); v != "private" {
		t.Fatalf("visibility after refused publishes: %q, want private", v)
	}
	publish(alice, all[0], "hidden").wantError(t, 400, "M_INVALID_PARAM")
	for _, id := range all {
		publish(alice, id, "public").wantStatus(t, 200)
	}
	publish(alice, all[0], "public").wantStatus(t, 200) // no change needed is still 200
	if v := visibility(all[0]); v != "public" {
		t.Fatalf("visibility after publishing: %q, want public", v)
	}
	if v := visibility(hidden); v != "private" {
		t.Fatalf("unpublished room: %q, want private", v)
	}

	// walk pages through the directory, GET or POST, and returns the room
	// IDs in order and each room's entry.
	walk := func(method, term string, limit int) ([]string, map[string]map[string]any) {
		t.Helper()
		var ids []string
		entries := map[string]map[string]any{}
		since := ""
		for page := 0; ; page++ {
			if page > len(all)+2 {
				t.Fatalf("%s /publicRooms limit=%d: pagination does not end (%v)", method, limit, ids)
			}
			var r *response
			if method == "GET" {
				q := url.Values{"limit": {fmt.Sprint(limit)}}
				if since != "" {
					q.Set("since", since)
				}
				r = ts.do(t, "GET", covV3+"/publicRooms?"+q.Encode(), "", nil)
			} else {
				body := map[string]any{"limit": limit, "filter": map[string]any{"generic_search_term": term}}
				if since != "" {
					body["since"] = since
				}
				r = ts.do(t, "POST", covV3+"/publicRooms", bob.Token, body)
			}
			r.wantStatus(t, 200)
			m := r.json(t)
			chunk := m["chunk"].([]any)
			if len(chunk) > limit {
				t.Fatalf("%s /publicRooms: %d rooms over limit %d", method, len(chunk), limit)
			}
			if page > 0 {
				if _, ok := m["prev_batch"].(string); !ok {
					t.Errorf("%s /publicRooms page %d: no prev_batch", method, page)
				}
			}
			for _, c := range chunk {
				e := c.(map[string]any)
				id := e["room_id"].(string)
				ids = append(ids, id)
				entries[id] = e
			}
			nb, ok := m["next_batch"].(string)
			if !ok {
				return ids, entries
			}
			if nb == since {
				t.Fatalf("next_batch %q does not move", nb)
			}
			since = nb
		}
	}
	once := func(what string, got, want []string) {
		t.Helper()
		if !slices.Equal(covSorted(got), covSorted(want)) {
			t.Errorf("%s: rooms %v, want each of %v exactly once", what, got, want)
		}
	}

	for _, limit := range []int{1, 3, 100} {
		ids, entries := walk("GET", "", limit)
		once(fmt.Sprintf("GET limit=%d", limit), ids, all)
		if e := entries[kitchen]; e != nil && (e["name"] != "Kitchen" || e["topic"] != "where the GARDEN produce goes" ||
			e["join_rule"] != "public" || e["world_readable"] != false || e["guest_can_join"] != false) {
			t.Errorf("directory entry of the kitchen: %v", e)
		}
		ids, _ = walk("POST", "", limit)
		once(fmt.Sprintf("POST limit=%d", limit), ids, all)
		ids, _ = walk("POST", "gArDeN", limit)
		once(fmt.Sprintf("POST generic_search_term limit=%d", limit), ids, gardens)
	}
	if ids, _ := walk("POST", "no such room anywhere", 5); len(ids) != 0 {
		t.Errorf("search for nothing found %v", ids)
	}

	members := func(id string) float64 {
		t.Helper()
		_, entries := walk("GET", "", 100)
		e := entries[id]
		if e == nil {
			t.Fatalf("room %s not in the directory", id)
		}
		return e["num_joined_members"].(float64)
	}
	target := all[3]
	if n := members(target); n != 1 {
		t.Errorf("num_joined_members of a new room: %v, want 1", n)
	}
	covJoin(t, ts, bob, target)
	covJoin(t, ts, carol, target)
	if n := members(target); n != 3 {
		t.Errorf("num_joined_members after two joins: %v, want 3", n)
	}
	// Largest rooms come first.
	if ids, _ := walk("GET", "", 1); len(ids) == 0 || ids[0] != target {
		t.Errorf("directory order %v: the largest room %s should be first", ids, target)
	}
	ts.do(t, "POST", covRoomPath(target)+"/leave", carol.Token, map[string]any{}).wantStatus(t, 200)
	if n := members(target); n != 2 {
		t.Errorf("num_joined_members after a leave: %v, want 2", n)
	}

	publish(alice, target, "private").wantStatus(t, 200)
	ids, _ := walk("GET", "", 2)
	once("after unpublishing", ids, slices.DeleteFunc(slices.Clone(all), func(s string) bool { return s == target }))
}

// TestUserDirectorySearch covers POST /user_directory/search (users.yaml).
func TestUserDirectorySearch(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	zelda, zephyr, zorro, sage := ts.register(t, "zelda"), ts.register(t, "zephyr"), ts.register(t, "zorro"), ts.register(t, "sage")
	setName := func(u *testUser, name string) {
		ts.do(t, "PUT", covV3+"/profile/"+url.PathEscape(u.ID)+"/displayname", u.Token, map[string]any{"displayname": name}).wantStatus(t, 200)
	}
	setName(zelda, "Princess Zelda")
	setName(sage, "Zen Master")
	search := func(term string, limit int) ([]string, map[string]any, bool) {
		t.Helper()
		body := map[string]any{"search_term": term}
		if limit > 0 {
			body["limit"] = limit
		}
		r := ts.do(t, "POST", covV3+"/user_directory/search", alice.Token, body)
		r.wantStatus(t, 200)
		m := r.json(t)
		limited, ok := m["limited"].(bool)
		if !ok {
			t.Fatalf("limited missing: %s", r.Body)
		}
		var ids []string
		names := map[string]any{}
		for _, e := range m["results"].([]any) {
			res := e.(map[string]any)
			ids = append(ids, res["user_id"].(string))
			names[res["user_id"].(string)] = res["display_name"]
		}
		return covSorted(ids), names, limited
	}

	if ids, _, _ := search("ZEL", 0); !slices.Equal(ids, []string{zelda.ID}) {
		t.Errorf("search ZEL (localpart): %v, want [%s]", ids, zelda.ID)
	}
	ids, names, _ := search("princess", 0)
	if !slices.Equal(ids, []string{zelda.ID}) || names[zelda.ID] != "Princess Zelda" {
		t.Errorf("search princess (display name): %v %v", ids, names)
	}
	if ids, _, _ := search("zen MASTER", 0); !slices.Equal(ids, []string{sage.ID}) {
		t.Errorf("search zen MASTER: %v, want [%s]", ids, sage.ID)
	}
	everyZ := covSorted([]string{zelda.ID, zephyr.ID, zorro.ID, sage.ID})
	if ids, _, limited := search("z", 10); !slices.Equal(ids, everyZ) || limited {
		t.Errorf("search z limit 10: %v limited=%v, want %v unlimited", ids, limited, everyZ)
	}
	ids, _, limited := search("z", 2)
	if len(ids) != 2 || !limited {
		t.Errorf("search z limit 2: %v limited=%v, want 2 results and limited", ids, limited)
	}
	for _, id := range ids {
		if !slices.Contains(everyZ, id) {
			t.Errorf("search z limit 2: %s does not match", id)
		}
	}
	if ids, _, limited := search("nobody-has-this", 5); len(ids) != 0 || limited {
		t.Errorf("search for nobody: %v limited=%v", ids, limited)
	}
}

// TestWellKnownClient covers GET /.well-known/matrix/client (wellknown.yaml).
func TestWellKnownClient(t *testing.T) {
	ts := newTestServer(t)
	r := ts.do(t, "GET", "/.well-known/matrix/client", "", nil)
	r.wantStatus(t, 200)
	hs, _ := r.json(t)["m.homeserver"].(map[string]any)
	base, _ := hs["base_url"].(string)
	if strings.TrimSuffix(base, "/") != ts.URL {
		t.Fatalf("m.homeserver.base_url %q, want %q", base, ts.URL)
	}
	// The base URL must lead to the API.
	u, err := url.Parse(base)
	if err != nil || u.Scheme == "" || u.Host == "" {
		t.Fatalf("base_url %q is not an absolute URL", base)
	}
	ts.do(t, "GET", u.Path+"/_matrix/client/versions", "", nil).wantStatus(t, 200)
}
