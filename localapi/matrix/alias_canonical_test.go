package matrix_test

import (
	"encoding/json"
	"net/url"
	"reflect"
	"testing"
)

// Deleting an alias the room's m.room.canonical_alias names sends a new
// canonical_alias without it, which the room's members get in /sync (sytest
// "Can delete canonical alias"); an alias it does not name leaves it alone.
func TestDeleteAliasUpdatesCanonicalAlias(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	rid := ts.createRoom(t, alice, map[string]any{"preset": "public_chat"})
	main, alt, other := "#main:"+testServerName, "#alt:"+testServerName, "#other:"+testServerName
	for _, a := range []string{main, alt, other} {
		ts.do(t, "PUT", covV3+"/directory/room/"+url.PathEscape(a), alice.Token, map[string]any{"room_id": rid}).wantStatus(t, 200)
	}
	statePath := covRoomPath(rid) + "/state/m.room.canonical_alias/"
	ts.do(t, "PUT", statePath, alice.Token, map[string]any{"alias": main, "alt_aliases": []string{alt}}).wantStatus(t, 200)
	canonical := func() map[string]any {
		t.Helper()
		r := ts.do(t, "GET", statePath, alice.Token, nil)
		r.wantStatus(t, 200)
		return r.json(t)
	}
	since := covSync(t, ts, alice, "")["next_batch"].(string)

	ts.do(t, "DELETE", covV3+"/directory/room/"+url.PathEscape(other), alice.Token, nil).wantStatus(t, 200)
	if got, want := canonical(), map[string]any{"alias": main, "alt_aliases": []any{alt}}; !reflect.DeepEqual(got, want) {
		t.Errorf("after deleting an alias it does not name, canonical_alias is %v", got)
	}
	ts.do(t, "DELETE", covV3+"/directory/room/"+url.PathEscape(main), alice.Token, nil).wantStatus(t, 200)
	if got, want := canonical(), map[string]any{"alt_aliases": []any{alt}}; !reflect.DeepEqual(got, want) {
		t.Errorf("after deleting its alias, canonical_alias is %v, want %v", got, want)
	}
	ts.do(t, "DELETE", covV3+"/directory/room/"+url.PathEscape(alt), alice.Token, nil).wantStatus(t, 200)
	if got := canonical(); len(got) != 0 {
		t.Errorf("after deleting every alias it named, canonical_alias is %v, want {}", got)
	}

	// The room's members see the change in their sync.
	jr, _ := covSync(t, ts, alice, since)["rooms"].(map[string]any)["join"].(map[string]any)[rid].(map[string]any)
	if jr == nil {
		t.Fatal("the room is not in alice's sync after the deletes")
	}
	b, _ := json.Marshal(jr["timeline"])
	var tl struct {
		Events []struct {
			Type    string         `json:"type"`
			Content map[string]any `json:"content"`
		} `json:"events"`
	}
	json.Unmarshal(b, &tl)
	var updates int
	for _, ev := range tl.Events {
		if ev.Type == "m.room.canonical_alias" {
			updates++
		}
	}
	if updates != 2 || len(tl.Events[len(tl.Events)-1].Content) != 0 {
		t.Errorf("alice's sync has %d canonical_alias updates (want 2), last content %v", updates, tl.Events[len(tl.Events)-1].Content)
	}
}
