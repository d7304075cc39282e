package federation

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/hearth-chat/hearth/internal/room"
)

// TestPublicRoomsOverFederation: hs2 pages through hs1's directory with
// signed GET and POST requests (largest rooms first, offsets as since
// tokens), filters it, and gets 400 for a bad since token.
func TestPublicRoomsOverFederation(t *testing.T) {
	n := newUKNet()
	hs1, hs2 := newUKServer(t, n, "hs1.test", false), newUKServer(t, n, "hs2.test", false)
	alice := hs1.addUser(t, "alice", "ADEV", false)
	ctx := context.Background()
	for i, name := range []string{"Croquet", "Tea party", "Courtroom"} {
		name := name
		roomID, err := hs1.rooms.CreateRoom(ctx, alice, room.Profile{}, room.CreateRequest{Name: &name, Preset: "public_chat", Visibility: "public"})
		if err != nil {
			t.Fatal(err)
		}
		// Croquet gets 3 members, Tea party 2, Courtroom 1.
		for j := range 2 - i {
			user := hs1.addUser(t, fmt.Sprintf("guest%d%d", i, j), "D", false)
			if _, err := hs1.rooms.ChangeMembership(ctx, room.MembershipRequest{Sender: user, RoomID: roomID, Target: user, Membership: "join"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	private := "Private"
	if _, err := hs1.rooms.CreateRoom(ctx, alice, room.Profile{}, room.CreateRequest{Name: &private, Preset: "private_chat"}); err != nil {
		t.Fatal(err)
	}

	names := func(body map[string]any) []string {
		var out []string
		for _, r := range body["chunk"].([]any) {
			out = append(out, r.(map[string]any)["name"].(string))
		}
		return out
	}
	code, _, page := hs2.call(t, "GET", "hs1.test", "/_matrix/federation/v1/publicRooms?limit=2", nil)
	if code != http.StatusOK || fmt.Sprint(names(page)) != "[Croquet Tea party]" || page["next_batch"] != "2" || page["total_room_count_estimate"] != 3.0 {
		t.Fatalf("first page: %d %v", code, page)
	}
	code, _, page = hs2.call(t, "GET", "hs1.test", "/_matrix/federation/v1/publicRooms?limit=2&since="+url.QueryEscape("2"), nil)
	if code != http.StatusOK || fmt.Sprint(names(page)) != "[Courtroom]" || page["next_batch"] != nil || page["prev_batch"] != "0" {
		t.Fatalf("second page: %d %v", code, page)
	}
	code, _, page = hs2.call(t, "POST", "hs1.test", "/_matrix/federation/v1/publicRooms",
		map[string]any{"filter": map[string]any{"generic_search_term": "TEA"}, "include_all_networks": true})
	if code != http.StatusOK || fmt.Sprint(names(page)) != "[Tea party]" {
		t.Fatalf("filtered: %d %v", code, page)
	}
	if members := page["chunk"].([]any)[0].(map[string]any)["num_joined_members"]; members != 2.0 {
		t.Errorf("tea party members = %v", members)
	}
	code, errcode, _ := hs2.call(t, "GET", "hs1.test", "/_matrix/federation/v1/publicRooms?since=x", nil)
	if code != http.StatusBadRequest || errcode != "M_INVALID_PARAM" {
		t.Errorf("bad since: %d %s", code, errcode)
	}

	// The client side: hs2's PublicRooms asks hs1.
	raw, err := hs2.svc.PublicRooms(ctx, "hs1.test", 1, "", "")
	if err != nil {
		t.Fatal(err)
	}
	var res map[string]any
	if err := json.Unmarshal(raw, &res); err != nil || fmt.Sprint(names(res)) != "[Croquet]" || res["next_batch"] != "1" {
		t.Fatalf("PublicRooms from hs2: %s %v", raw, err)
	}
}

// TestSpaceHierarchy: hs2 asks hs1 for a space: its summary and
// m.space.child events (a child without via is none), the public child
// summarised, the invite-only child and a child restricted to a room hs2
// is not in listed as inaccessible; suggested_only
// narrows it; an invite-only space itself is 404.
func TestSpaceHierarchy(t *testing.T) {
	n := newUKNet()
	hs1, hs2 := newUKServer(t, n, "hs1.test", false), newUKServer(t, n, "hs2.test", false)
	alice := hs1.addUser(t, "alice", "ADEV", false)
	ctx := context.Background()
	create := func(name, preset string, space bool) string {
		req := room.CreateRequest{Name: &name, Preset: preset}
		if space {
			req.CreationContent = json.RawMessage(`{"type":"m.space"}`)
		}
		id, err := hs1.rooms.CreateRoom(ctx, alice, room.Profile{}, req)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	space := create("Wonderland", "public_chat", true)
	garden := create("Garden", "public_chat", false)
	cottage := create("Cottage", "private_chat", false)
	hidden := create("Hidden space", "private_chat", true)
	// Restricted to members of the space, which hs2 has none in.
	gateReq := room.CreateRequest{Preset: "private_chat", RoomVersion: "10", InitialState: []room.StateEvent{{Type: "m.room.join_rules",
		Content: json.RawMessage(`{"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":"` + space + `"}]}`)}}}
	gate, err := hs1.rooms.CreateRoom(ctx, alice, room.Profile{}, gateReq)
	if err != nil {
		t.Fatal(err)
	}
	addChild := func(child, content string) {
		if _, err := hs1.rooms.Send(ctx, room.SendRequest{Sender: alice, RoomID: space, Type: "m.space.child", StateKey: &child,
			Content: json.RawMessage(content)}); err != nil {
			t.Fatal(err)
		}
	}
	addChild(garden, `{"via":["hs1.test"],"suggested":true}`)
	addChild(cottage, `{"via":["hs1.test"]}`)
	addChild(gate, `{"via":["hs1.test"]}`)
	addChild("!elsewhere:hs9.test", `{"via":["hs9.test"]}`)
	addChild("!gone:hs1.test", `{}`)

	get := func(roomID, query string) (int, string, map[string]any) {
		return hs2.call(t, "GET", "hs1.test", "/_matrix/federation/v1/hierarchy/"+url.PathEscape(roomID)+query, nil)
	}
	code, _, res := get(space, "")
	if code != http.StatusOK {
		t.Fatalf("hierarchy: %d", code)
	}
	root := res["room"].(map[string]any)
	if root["name"] != "Wonderland" || root["room_type"] != "m.space" || root["join_rule"] != "public" || root["num_joined_members"] != 1.0 {
		t.Errorf("space summary: %v", root)
	}
	var childIDs []string
	for _, c := range root["children_state"].([]any) {
		childIDs = append(childIDs, c.(map[string]any)["state_key"].(string))
	}
	if len(childIDs) != 4 || slices.Contains(childIDs, "!gone:hs1.test") {
		t.Errorf("children_state names %v, want garden, cottage, gate and the remote room", childIDs)
	}
	children := res["children"].([]any)
	if len(children) != 1 || children[0].(map[string]any)["room_id"] != garden || children[0].(map[string]any)["name"] != "Garden" {
		t.Errorf("children: %v, want the garden", children)
	}
	inaccessible := fmt.Sprint(res["inaccessible_children"])
	if inaccessible != fmt.Sprint([]any{cottage, gate}) && inaccessible != fmt.Sprint([]any{gate, cottage}) {
		t.Errorf("inaccessible_children: %v, want the cottage and the gate", res["inaccessible_children"])
	}

	_, _, res = get(space, "?suggested_only=true")
	if n := len(res["room"].(map[string]any)["children_state"].([]any)); n != 1 || len(res["children"].([]any)) != 1 || len(res["inaccessible_children"].([]any)) != 0 {
		t.Errorf("suggested_only: %v", res)
	}
	if code, errcode, _ := get(hidden, ""); code != http.StatusNotFound || errcode != "M_NOT_FOUND" {
		t.Errorf("invite-only space: %d %s, want 404", code, errcode)
	}
	if code, errcode, _ := get("!nowhere:hs1.test", ""); code != http.StatusNotFound || errcode != "M_NOT_FOUND" {
		t.Errorf("unknown room: %d %s, want 404", code, errcode)
	}
}
