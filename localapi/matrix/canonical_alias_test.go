package matrix_test

import (
	"net/url"
	"testing"
)

// TestCanonicalAliasChecked: PUT m.room.canonical_alias refuses aliases
// that are not aliases (M_INVALID_PARAM) and local ones that do not exist
// or point elsewhere (M_BAD_ALIAS), and stores nothing then; deleting the
// canonical alias takes it out of the event (Complement
// TestRoomCanonicalAlias, TestRoomDeleteAlias "Can delete canonical alias").
func TestCanonicalAliasChecked(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	room1, room2 := ts.createRoom(t, alice, nil), ts.createRoom(t, alice, nil)
	setAlias := func(alias, roomID string) {
		t.Helper()
		ts.do(t, "PUT", covV3+"/directory/room/"+url.PathEscape(alias), alice.Token, map[string]any{"room_id": roomID}).wantStatus(t, 200)
	}
	setAlias("#here:test.local", room1)
	setAlias("#there:test.local", room2)
	put := func(content map[string]any) *response {
		return ts.do(t, "PUT", covRoomPath(room1)+"/state/m.room.canonical_alias/", alice.Token, content)
	}
	put(map[string]any{"alias": "#missing:test.local"}).wantError(t, 400, "M_BAD_ALIAS")
	put(map[string]any{"alias": "#there:test.local"}).wantError(t, 400, "M_BAD_ALIAS")
	put(map[string]any{"alias": "%invalid_aliases:test.local"}).wantError(t, 400, "M_INVALID_PARAM")
	put(map[string]any{"alias": 5}).wantError(t, 400, "M_INVALID_PARAM")
	put(map[string]any{"alias": "#here:test.local", "alt_aliases": []any{"#missing:test.local"}}).wantError(t, 400, "M_BAD_ALIAS")
	put(map[string]any{"alias": "#here:test.local", "alt_aliases": []any{"nope"}}).wantError(t, 400, "M_INVALID_PARAM")
	put(map[string]any{"alias": "#here:test.local", "alt_aliases": "#here:test.local"}).wantError(t, 400, "M_INVALID_PARAM")
	ts.do(t, "GET", covRoomPath(room1)+"/state/m.room.canonical_alias/", alice.Token, nil).wantError(t, 404, "M_NOT_FOUND")

	put(map[string]any{"alias": "#here:test.local", "alt_aliases": []any{"#here:test.local", "#elsewhere:other.example"}}).wantStatus(t, 200)
	ts.do(t, "DELETE", covV3+"/directory/room/"+url.PathEscape("#here:test.local"), alice.Token, nil).wantStatus(t, 200)
	r := ts.do(t, "GET", covRoomPath(room1)+"/state/m.room.canonical_alias/", alice.Token, nil)
	r.wantStatus(t, 200)
	c := r.json(t)
	if _, ok := c["alias"]; ok || len(c["alt_aliases"].([]any)) != 1 {
		t.Errorf("canonical alias after deleting #here = %v, want only the remote alt alias", c)
	}
	put(map[string]any{}).wantStatus(t, 200) // clearing it needs no alias
}
