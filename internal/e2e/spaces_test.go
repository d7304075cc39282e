package e2e

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// TestFederatedSpaceHierarchy: a space tree that crosses two servers,
//
//	ROOT ─┬─ R1
//	      ├─ SS1 ─┬─ ss2 ── R4
//	      │       └─ r3
//	      └─ r2
//
// (capitals on hs1, lower case on hs2; alice of hs1 is in none of hs2's
// rooms), is walked whole by GET /hierarchy on hs1, depth first in the
// children's order: hs1 asks hs2 for the rooms it is not in, and comes
// back to its own R4 below hs2's ss2. A room of hs2 restricted to the
// space's members follows the rules of restricted rooms across servers.
func TestFederatedSpaceHierarchy(t *testing.T) {
	t.Parallel()
	net := startFedNet(t, "hs1.test", "hs2.test")
	hs1, hs2 := net.Daemons["hs1.test"], net.Daemons["hs2.test"]
	alice := hs1.Register("alice")
	bob := hs2.Register("bob")

	space := map[string]any{"type": "m.space"}
	mk := func(c *mautrix.Client, name string, isSpace bool) id.RoomID {
		req := &mautrix.ReqCreateRoom{Name: name, Preset: "public_chat"}
		if isSpace {
			req.CreationContent = space
		}
		return CreateRoom(t, c, req)
	}
	root, r1, ss1, r4 := mk(alice, "ROOT", true), mk(alice, "R1", false), mk(alice, "SS1", true), mk(alice, "R4", false)
	r2, ss2, r3 := mk(bob, "r2", false), mk(bob, "ss2", true), mk(bob, "r3", false)
	link := func(c *mautrix.Client, parent, child id.RoomID, via, order string) {
		path := "/_matrix/client/v3/rooms/" + url.PathEscape(string(parent)) + "/state/m.space.child/" + url.PathEscape(string(child))
		if code, body := Raw(t, c, "PUT", path, map[string]any{"via": []string{via}, "order": order}); code != 200 {
			t.Fatalf("link %s → %s: %d %s", parent, child, code, body)
		}
	}
	link(alice, root, r1, "hs1.test", "a")
	link(alice, root, ss1, "hs1.test", "b")
	link(alice, root, r2, "hs2.test", "c")
	link(alice, ss1, ss2, "hs2.test", "a")
	link(alice, ss1, r3, "hs2.test", "b")
	link(bob, ss2, r4, "hs1.test", "a")

	got, names := walkSpace(t, alice, root)
	want := []id.RoomID{root, r1, ss1, ss2, r4, r3, r2}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("walk %v (%v), want %v", got, names, want)
	}
	if fmt.Sprint(names) != "[ROOT R1 SS1 ss2 R4 r3 r2]" {
		t.Errorf("names %v: the remote summaries lost their fields", names)
	}

	// A room on hs2 restricted to members of ROOT: hs2 shows it to hs1
	// only once hs2 knows hs1 is in ROOT, that is once a user of hs2
	// joined ROOT; then hs1 shows it to alice, who is in ROOT, and not to
	// carol, who is not.
	charlie, carol := hs2.Register("charlie"), hs1.Register("carol")
	gate := CreateRoom(t, charlie, &mautrix.ReqCreateRoom{Name: "gate", Preset: "public_chat", RoomVersion: "8",
		InitialState: []*event.Event{{Type: event.StateJoinRules, StateKey: new(string), Content: event.Content{Raw: map[string]any{
			"join_rule": "restricted", "allow": []map[string]any{{"type": "m.room_membership", "room_id": root}}}}}}})
	link(alice, root, gate, "hs2.test", "d")
	if got, _ := walkSpace(t, alice, root); slices.Contains(got, gate) {
		t.Errorf("the restricted room shows before hs2 knows hs1 is in the space: %v", got)
	}
	_, err := charlie.JoinRoom(ctx(t), string(root), &mautrix.ReqJoinRoom{Via: []string{"hs1.test"}})
	noErr(t, err, "charlie joins the space over federation")
	waitFor(t, "charlie in the space as hs2 sees it", func() (map[id.UserID]string, bool) {
		m := memberships(t, charlie, root)
		return m, m[alice.UserID] == "join" && m[charlie.UserID] == "join"
	})
	if got, _ := walkSpace(t, alice, root); !slices.Contains(got, gate) {
		t.Errorf("alice, in the space, does not see the restricted room: %v", got)
	}
	if got, _ := walkSpace(t, carol, root); slices.Contains(got, gate) {
		t.Errorf("carol, not in the space, sees the restricted room: %v", got)
	}
}

// walkSpace is GET /hierarchy of root as c: the room IDs and names.
func walkSpace(t *testing.T, c *mautrix.Client, root id.RoomID) (ids []id.RoomID, names []string) {
	t.Helper()
	code, body := Raw(t, c, "GET", "/_matrix/client/v1/rooms/"+url.PathEscape(string(root))+"/hierarchy", nil)
	if code != 200 {
		t.Fatalf("hierarchy as %s: %d %s", c.UserID, code, body)
	}
	var res struct {
		Rooms []struct {
			RoomID id.RoomID `json:"room_id"`
			Name   string    `json:"name"`
		} `json:"rooms"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Rooms {
		ids = append(ids, r.RoomID)
		names = append(names, r.Name)
	}
	return ids, names
}
