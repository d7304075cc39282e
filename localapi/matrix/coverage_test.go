package matrix_test

// Tests for endpoints that had none: relations, receipts, aliases, the
// room directory, presence, /context paging, redaction permissions, odd
// state keys, the user directory and .well-known. Each settles behaviour
// against the spec's OpenAPI files in matrix-spec/data/api/client-server.

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
)

const covV3 = "/_matrix/client/v3"

func covRoomPath(roomID string) string { return covV3 + "/rooms/" + url.PathEscape(roomID) }

// covSend sends an event of any type with any content and returns its ID.
func covSend(t *testing.T, ts *testServer, u *testUser, roomID, typ, txn string, content map[string]any) string {
	t.Helper()
	r := ts.do(t, "PUT", covRoomPath(roomID)+"/send/"+typ+"/"+txn, u.Token, content)
	r.wantStatus(t, 200)
	return r.str(t, "event_id")
}

// covJoin joins u to a room.
func covJoin(t *testing.T, ts *testServer, u *testUser, roomID string) {
	t.Helper()
	ts.do(t, "POST", covRoomPath(roomID)+"/join", u.Token, map[string]any{}).wantStatus(t, 200)
}

// covSync runs a non-blocking /sync, initial when since is empty.
func covSync(t *testing.T, ts *testServer, u *testUser, since string) map[string]any {
	t.Helper()
	p := covV3 + "/sync?timeout=0"
	if since != "" {
		p += "&since=" + url.QueryEscape(since)
	}
	r := ts.do(t, "GET", p, u.Token, nil)
	r.wantStatus(t, 200)
	return r.json(t)
}

// covEphemeral returns the ephemeral events of a joined room in a sync
// response (none if the room is absent).
func covEphemeral(resp map[string]any, roomID string) []map[string]any {
	rooms, _ := resp["rooms"].(map[string]any)
	join, _ := rooms["join"].(map[string]any)
	jr, _ := join[roomID].(map[string]any)
	eph, _ := jr["ephemeral"].(map[string]any)
	evs, _ := eph["events"].([]any)
	var out []map[string]any
	for _, e := range evs {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// covReceipt finds the receipt entry content[eventID][typ][user] in the
// m.receipt events of a sync response; nil if absent.
func covReceipt(resp map[string]any, roomID, eventID, typ, user string) map[string]any {
	for _, ev := range covEphemeral(resp, roomID) {
		if ev["type"] != "m.receipt" {
			continue
		}
		c, _ := ev["content"].(map[string]any)
		byEvent, _ := c[eventID].(map[string]any)
		byType, _ := byEvent[typ].(map[string]any)
		if entry, ok := byType[user].(map[string]any); ok {
			return entry
		}
	}
	return nil
}

// covHasReceiptType reports whether any m.receipt in the response holds
// a receipt of type typ, for any event and user.
func covHasReceiptType(resp map[string]any, typ string) bool {
	rooms, _ := resp["rooms"].(map[string]any)
	join, _ := rooms["join"].(map[string]any)
	for id := range join {
		for _, ev := range covEphemeral(resp, id) {
			c, _ := ev["content"].(map[string]any)
			for _, byEvent := range c {
				if m, _ := byEvent.(map[string]any); m != nil && m[typ] != nil {
					return true
				}
			}
		}
	}
	return false
}

// covIDs returns the event_id of every event in a chunk.
func covIDs(t *testing.T, v any) []string {
	t.Helper()
	list, ok := v.([]any)
	if !ok {
		t.Fatalf("not a list of events: %v", v)
	}
	out := make([]string, 0, len(list))
	for _, e := range list {
		m, _ := e.(map[string]any)
		id, _ := m["event_id"].(string)
		if id == "" {
			t.Fatalf("event without event_id: %v", e)
		}
		out = append(out, id)
	}
	return out
}

func covReversed(s []string) []string {
	out := slices.Clone(s)
	slices.Reverse(out)
	return out
}

func covSorted(s []string) []string {
	out := slices.Clone(s)
	sort.Strings(out)
	return out
}

// TestRelations covers GET /v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]
// (relations.yaml): every relation kind, the rel_type and event type
// filters, and pagination that returns each child once in both directions.
func TestRelations(t *testing.T) {
	ts := newTestServer(t)
	alice, bob, eve := ts.register(t, "alice"), ts.register(t, "bob"), ts.register(t, "eve")
	rid := ts.createRoom(t, alice, map[string]any{"preset": "public_chat"})
	covJoin(t, ts, bob, rid)

	root := ts.send(t, alice, rid, "root", "what shall we cook?")
	other := ts.send(t, bob, rid, "other", "an unrelated message")

	var all, reactions, edits, threads []string
	txn := 0
	next := func() string { txn++; return fmt.Sprintf("rel%d", txn) }
	react := func(u *testUser, key string) {
		id := covSend(t, ts, u, rid, "m.reaction", next(), map[string]any{
			"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": root, "key": key}})
		all, reactions = append(all, id), append(reactions, id)
	}
	edit := func(text string) {
		id := covSend(t, ts, alice, rid, "m.room.message", next(), map[string]any{
			"msgtype": "m.text", "body": "* " + text,
			"m.new_content": map[string]any{"msgtype": "m.text", "body": text},
			"m.relates_to":  map[string]any{"rel_type": "m.replace", "event_id": root}})
		all, edits = append(all, id), append(edits, id)
	}
	reply := func(u *testUser, text string) {
		id := covSend(t, ts, u, rid, "m.room.message", next(), map[string]any{
			"msgtype": "m.text", "body": text,
			"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root,
				"is_falling_back": true, "m.in_reply_to": map[string]any{"event_id": root}}})
		all, threads = append(all, id), append(threads, id)
	}
	react(bob, "👍")
	reply(bob, "soup")
	edit("what shall we cook tonight?")
	react(alice, "🎉")
	reply(alice, "bread")
	// Noise: a plain message and a relation to another event.
	ts.send(t, alice, rid, "noise", "not related")
	covSend(t, ts, alice, rid, "m.reaction", next(), map[string]any{
		"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": other, "key": "👀"}})
	reply(bob, "salad")
	edit("what shall we cook tomorrow?")
	react(bob, "🍲")

	base := "/_matrix/client/v1/rooms/" + url.PathEscape(rid) + "/relations/" + url.PathEscape(root)
	get := func(u *testUser, suffix string) map[string]any {
		t.Helper()
		r := ts.do(t, "GET", base+suffix, u.Token, nil)
		r.wantStatus(t, 200)
		return r.json(t)
	}
	wantChunk := func(what string, got map[string]any, want []string) {
		t.Helper()
		if ids := covIDs(t, got["chunk"]); !slices.Equal(ids, want) {
			t.Errorf("%s: chunk %v, want %v", what, ids, want)
		}
		if nb, ok := got["next_batch"]; ok {
			t.Errorf("%s: next_batch %v on a page holding every result", what, nb)
		}
	}

	t.Run("all children newest first", func(t *testing.T) {
		resp := get(bob, "")
		wantChunk("no filter", resp, covReversed(all))
		for _, e := range resp["chunk"].([]any) {
			ev := e.(map[string]any)
			if ev["room_id"] != rid || ev["sender"] == nil || ev["content"] == nil {
				t.Errorf("child is not a ClientEvent: %v", ev)
			}
		}
		wantChunk("dir=f", get(bob, "?dir=f"), all)
	})

	t.Run("to bounds a page", func(t *testing.T) {
		// A backward page of one leaves a token just below the newest
		// child; paging forward to it returns every child but the newest.
		tok, _ := get(bob, "?limit=1")["next_batch"].(string)
		if tok == "" {
			t.Fatal("no next_batch on a page of one")
		}
		wantChunk("dir=f to", get(bob, "?dir=f&to="+url.QueryEscape(tok)), all[:len(all)-1])
	})

	t.Run("filters", func(t *testing.T) {
		wantChunk("m.annotation", get(bob, "/m.annotation"), covReversed(reactions))
		wantChunk("m.annotation/m.reaction", get(bob, "/m.annotation/m.reaction"), covReversed(reactions))
		wantChunk("m.annotation/m.room.message", get(bob, "/m.annotation/m.room.message"), []string{})
		wantChunk("m.replace", get(bob, "/m.replace"), covReversed(edits))
		wantChunk("m.replace/m.room.message", get(bob, "/m.replace/m.room.message"), covReversed(edits))
		wantChunk("m.thread", get(bob, "/m.thread"), covReversed(threads))
		wantChunk("m.thread/m.room.message?dir=f", get(bob, "/m.thread/m.room.message?dir=f"), threads)
		wantChunk("unknown rel_type", get(bob, "/org.example.nothing"), []string{})
		// The other message's only child is the stray reaction.
		r := ts.do(t, "GET", "/_matrix/client/v1/rooms/"+url.PathEscape(rid)+"/relations/"+url.PathEscape(other), bob.Token, nil)
		r.wantStatus(t, 200)
		if ids := covIDs(t, r.json(t)["chunk"]); len(ids) != 1 || slices.Contains(all, ids[0]) {
			t.Errorf("children of the other event: %v", ids)
		}
	})

	t.Run("pagination", func(t *testing.T) {
		cases := []struct {
			suffix string
			want   []string // in dir=f order
		}{{"", all}, {"/m.thread", threads}, {"/m.annotation/m.reaction", reactions}}
		for _, c := range cases {
			for _, dir := range []string{"b", "f"} {
				for _, limit := range []int{1, 2, 3, 4} {
					var got []string
					from := ""
					for page := 0; ; page++ {
						if page > len(c.want)+2 {
							t.Fatalf("%s dir=%s limit=%d: pagination does not end (got %v)", c.suffix, dir, limit, got)
						}
						q := fmt.Sprintf("?dir=%s&limit=%d", dir, limit)
						if from != "" {
							q += "&from=" + url.QueryEscape(from)
						}
						resp := get(bob, c.suffix+q)
						ids := covIDs(t, resp["chunk"])
						if len(ids) > limit {
							t.Fatalf("%s%s: %d events, over the limit", c.suffix, q, len(ids))
						}
						got = append(got, ids...)
						nb, ok := resp["next_batch"].(string)
						if !ok {
							break
						}
						if nb == "" || nb == from {
							t.Fatalf("%s%s: next_batch %q does not move", c.suffix, q, nb)
						}
						from = nb
					}
					want := c.want
					if dir == "b" {
						want = covReversed(want)
					}
					if !slices.Equal(got, want) {
						t.Errorf("%s dir=%s limit=%d: pages gave %v, want %v", c.suffix, dir, limit, got, want)
					}
				}
			}
		}
	})

	t.Run("errors", func(t *testing.T) {
		// relations.yaml: 404 when "the user does not have permission to
		// read this event".
		ts.do(t, "GET", base, eve.Token, nil).wantError(t, 404, "M_NOT_FOUND")
		ts.do(t, "GET", base+"/m.annotation", eve.Token, nil).wantError(t, 404, "M_NOT_FOUND")
		ts.do(t, "GET", "/_matrix/client/v1/rooms/"+url.PathEscape(rid)+"/relations/"+url.PathEscape("$nope"), bob.Token, nil).
			wantError(t, 404, "M_NOT_FOUND")
		ts.do(t, "GET", base, "", nil).wantError(t, 401, "M_MISSING_TOKEN")
	})
}

// TestReceipts covers POST /rooms/{roomId}/receipt/{receiptType}/{eventId}
// (receipts.yaml) and how receipts reach /sync.
func TestReceipts(t *testing.T) {
	ts := newTestServer(t)
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	rid := ts.createRoom(t, alice, map[string]any{"preset": "public_chat"})
	covJoin(t, ts, bob, rid)
	e1 := ts.send(t, alice, rid, "e1", "one")
	e2 := ts.send(t, alice, rid, "e2", "two")
	root := ts.send(t, alice, rid, "root", "thread root")
	inThread := covSend(t, ts, bob, rid, "m.room.message", "reply", map[string]any{"msgtype": "m.text", "body": "in thread",
		"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}})
	receipt := func(u *testUser, typ, eventID string, body map[string]any) *response {
		t.Helper()
		if body == nil {
			body = map[string]any{}
		}
		return ts.do(t, "POST", covRoomPath(rid)+"/receipt/"+typ+"/"+url.PathEscape(eventID), u.Token, body)
	}
	aliceTok := covSync(t, ts, alice, "")["next_batch"].(string)
	bobTok := covSync(t, ts, bob, "")["next_batch"].(string)

	t.Run("m.read reaches the other member", func(t *testing.T) {
		receipt(bob, "m.read", e1, nil).wantStatus(t, 200)
		resp := covSync(t, ts, alice, aliceTok)
		entry := covReceipt(resp, rid, e1, "m.read", bob.ID)
		if entry == nil {
			t.Fatalf("bob's m.read on e1 missing from alice's sync: %v", covEphemeral(resp, rid))
		}
		if stamp, ok := entry["ts"].(float64); !ok || stamp <= 0 {
			t.Errorf("receipt ts %v, want a positive timestamp", entry["ts"])
		}
		if _, ok := entry["thread_id"]; ok {
			t.Errorf("unthreaded receipt carries thread_id: %v", entry)
		}
		aliceTok = resp["next_batch"].(string)
	})

	t.Run("m.read.private stays with its sender", func(t *testing.T) {
		receipt(bob, "m.read.private", e2, nil).wantStatus(t, 200)
		resp := covSync(t, ts, alice, aliceTok)
		if covHasReceiptType(resp, "m.read.private") {
			t.Errorf("alice's incremental sync shows a private receipt: %v", covEphemeral(resp, rid))
		}
		aliceTok = resp["next_batch"].(string)
		if covHasReceiptType(covSync(t, ts, alice, ""), "m.read.private") {
			t.Errorf("alice's initial sync shows bob's private receipt")
		}
		own := covSync(t, ts, bob, bobTok)
		if covReceipt(own, rid, e2, "m.read.private", bob.ID) == nil {
			t.Errorf("bob's own incremental sync lacks his private receipt: %v", covEphemeral(own, rid))
		}
		bobTok = own["next_batch"].(string)
		if covReceipt(covSync(t, ts, bob, ""), rid, e2, "m.read.private", bob.ID) == nil {
			t.Errorf("bob's own initial sync lacks his private receipt")
		}
		// A later public receipt re-sends bob's receipts to alice: the
		// private one must still be left out.
		receipt(bob, "m.read", e2, nil).wantStatus(t, 200)
		resp = covSync(t, ts, alice, aliceTok)
		if covReceipt(resp, rid, e2, "m.read", bob.ID) == nil {
			t.Errorf("bob's m.read on e2 missing: %v", covEphemeral(resp, rid))
		}
		if covHasReceiptType(resp, "m.read.private") {
			t.Errorf("private receipt leaked alongside a public one: %v", covEphemeral(resp, rid))
		}
		aliceTok = resp["next_batch"].(string)
	})

	t.Run("threaded receipts", func(t *testing.T) {
		receipt(bob, "m.read", e2, map[string]any{"thread_id": "main"}).wantStatus(t, 200)
		receipt(bob, "m.read", inThread, map[string]any{"thread_id": root}).wantStatus(t, 200)
		resp := covSync(t, ts, alice, aliceTok)
		if entry := covReceipt(resp, rid, e2, "m.read", bob.ID); entry == nil || entry["thread_id"] != "main" {
			t.Errorf("main-thread receipt: %v, want thread_id main; ephemeral %v", entry, covEphemeral(resp, rid))
		}
		if entry := covReceipt(resp, rid, inThread, "m.read", bob.ID); entry == nil || entry["thread_id"] != root {
			t.Errorf("thread receipt: %v, want thread_id %s; ephemeral %v", entry, root, covEphemeral(resp, rid))
		}
		// receipts.yaml: 400 when thread_id "is empty" or "is not a string".
		receipt(bob, "m.read", e2, map[string]any{"thread_id": ""}).wantError(t, 400, "M_INVALID_PARAM")
		if r := receipt(bob, "m.read", e2, map[string]any{"thread_id": 7}); r.Status != 400 {
			t.Errorf("numeric thread_id: status %d, want 400", r.Status)
		}
		// ... and when the event is not in the thread it names.
		receipt(bob, "m.read", inThread, map[string]any{"thread_id": "main"}).wantError(t, 400, "M_INVALID_PARAM")
		receipt(bob, "m.read", e2, map[string]any{"thread_id": root}).wantError(t, 400, "M_INVALID_PARAM")
		// ... and when it "is provided for an incompatible receipt type".
		receipt(bob, "m.fully_read", e2, map[string]any{"thread_id": "main"}).wantError(t, 400, "M_INVALID_PARAM")
		receipt(bob, "m.fully_read", e2, nil).wantStatus(t, 200)
		// Refused receipts changed nothing that alice sees.
		resp = covSync(t, ts, alice, resp["next_batch"].(string))
		if evs := covEphemeral(resp, rid); len(evs) != 0 {
			t.Errorf("refused or fully_read receipts reached alice: %v", evs)
		}
		aliceTok = resp["next_batch"].(string)
	})

	t.Run("errors", func(t *testing.T) {
		receipt(bob, "m.read", "$unknown:"+testServerName, nil).wantError(t, 404, "M_NOT_FOUND")
		receipt(bob, "m.bogus", e1, nil).wantError(t, 400, "M_INVALID_PARAM")
		receipt(bob, "m.receipt", e1, nil).wantError(t, 400, "M_INVALID_PARAM")
	})
}

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

// TestPresence covers PUT/GET /presence/{userId}/status (presence.yaml)
// and presence in /sync.
func TestPresence(t *testing.T) {
	ts := newTestServer(t)
	alice, bob, carol := ts.register(t, "alice"), ts.register(t, "bob"), ts.register(t, "carol")
	rid := ts.createRoom(t, alice, map[string]any{"preset": "public_chat"})
	covJoin(t, ts, bob, rid)
	ts.createRoom(t, carol, nil)
	statusPath := func(u *testUser) string { return covV3 + "/presence/" + url.PathEscape(u.ID) + "/status" }
	get := func(viewer, of *testUser) map[string]any {
		t.Helper()
		r := ts.do(t, "GET", statusPath(of), viewer.Token, nil)
		r.wantStatus(t, 200)
		return r.json(t)
	}

	ts.do(t, "PUT", statusPath(alice), alice.Token, map[string]any{"presence": "online", "status_msg": "Baking bread 🍞"}).wantStatus(t, 200)
	for _, viewer := range []*testUser{alice, bob} {
		p := get(viewer, alice)
		if p["presence"] != "online" || p["status_msg"] != "Baking bread 🍞" {
			t.Errorf("%s reads alice's presence as %v", viewer.ID, p)
		}
	}
	ts.do(t, "GET", statusPath(alice), carol.Token, nil).wantError(t, 403, "M_FORBIDDEN")
	ts.do(t, "PUT", statusPath(alice), bob.Token, map[string]any{"presence": "offline"}).wantError(t, 403, "M_FORBIDDEN")
	ts.do(t, "PUT", statusPath(alice), alice.Token, map[string]any{"presence": "busy"}).wantError(t, 400, "M_INVALID_PARAM")

	bobTok := covSync(t, ts, bob, "")["next_batch"].(string)
	carolTok := covSync(t, ts, carol, "")["next_batch"].(string)
	ts.do(t, "PUT", statusPath(alice), alice.Token, map[string]any{"presence": "unavailable", "status_msg": "out for a walk"}).wantStatus(t, 200)
	if p := get(bob, alice); p["presence"] != "unavailable" || p["status_msg"] != "out for a walk" {
		t.Errorf("alice's presence after the change: %v", p)
	}

	aliceIn := func(resp map[string]any) map[string]any {
		pres, _ := resp["presence"].(map[string]any)
		evs, _ := pres["events"].([]any)
		for _, e := range evs {
			ev := e.(map[string]any)
			if ev["type"] == "m.presence" && ev["sender"] == alice.ID {
				return ev["content"].(map[string]any)
			}
		}
		return nil
	}
	resp := covSync(t, ts, bob, bobTok)
	if c := aliceIn(resp); c == nil || c["presence"] != "unavailable" || c["status_msg"] != "out for a walk" {
		t.Errorf("bob's incremental sync: alice's presence %v, want unavailable with the new status_msg; presence %v", c, resp["presence"])
	}
	if c := aliceIn(covSync(t, ts, carol, carolTok)); c != nil {
		t.Errorf("carol shares no room with alice but her sync has alice's presence %v", c)
	}
	// Nothing changed since: the next incremental sync has no news of alice.
	if c := aliceIn(covSync(t, ts, bob, resp["next_batch"].(string))); c != nil {
		t.Errorf("alice's unchanged presence repeated: %v", c)
	}
}

// TestContextPaging covers GET /rooms/{roomId}/context/{eventId}
// (event_context.yaml) and continuing from its tokens with /messages.
func TestContextPaging(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	rid := ts.createRoom(t, alice, nil)
	var msgs []string
	for i := range 12 {
		msgs = append(msgs, ts.send(t, alice, rid, fmt.Sprintf("m%d", i), fmt.Sprintf("message %d", i)))
	}
	mid := 6
	messages := func(dir, from string, limit int) []string {
		t.Helper()
		q := url.Values{"dir": {dir}, "from": {from}, "limit": {fmt.Sprint(limit)}}
		r := ts.do(t, "GET", covRoomPath(rid)+"/messages?"+q.Encode(), alice.Token, nil)
		r.wantStatus(t, 200)
		return covIDs(t, r.json(t)["chunk"])
	}
	context := func(limit int) map[string]any {
		t.Helper()
		r := ts.do(t, "GET", fmt.Sprintf("%s/context/%s?limit=%d", covRoomPath(rid), url.PathEscape(msgs[mid]), limit), alice.Token, nil)
		r.wantStatus(t, 200)
		m := r.json(t)
		if ev, _ := m["event"].(map[string]any); ev["event_id"] != msgs[mid] {
			t.Fatalf("context limit=%d: event %v, want %s", limit, m["event"], msgs[mid])
		}
		if _, ok := m["state"].([]any); !ok {
			t.Errorf("context limit=%d: state missing", limit)
		}
		return m
	}

	for _, c := range []struct{ limit, before, after int }{{4, 2, 2}, {5, 2, 3}, {1, 0, 1}, {0, 0, 0}} {
		t.Run(fmt.Sprintf("limit=%d", c.limit), func(t *testing.T) {
			m := context(c.limit)
			before, after := covIDs(t, m["events_before"]), covIDs(t, m["events_after"])
			// events_before is newest first, events_after oldest first.
			wantBefore := covReversed(msgs[mid-c.before : mid])
			wantAfter := msgs[mid+1 : mid+1+c.after]
			if !slices.Equal(before, wantBefore) {
				t.Errorf("events_before %v, want %v", before, wantBefore)
			}
			if !slices.Equal(after, wantAfter) {
				t.Errorf("events_after %v, want %v", after, wantAfter)
			}
			start, end := m["start"].(string), m["end"].(string)
			// Paging back from start continues just before events_before.
			older := messages("b", start, 3)
			if want := covReversed(msgs[mid-c.before-3 : mid-c.before]); !slices.Equal(older, want) {
				t.Errorf("/messages dir=b from start: %v, want %v", older, want)
			}
			// Paging forward from end continues just after events_after.
			newer := messages("f", end, 20)
			if want := msgs[mid+1+c.after:]; !slices.Equal(newer, want) {
				t.Errorf("/messages dir=f from end: %v, want %v", newer, want)
			}
		})
	}
}

// TestRedactionPermissions covers the redact power level (redaction.yaml
// and Client-Server API §"Redactions") and redacted state in /state.
func TestRedactionPermissions(t *testing.T) {
	ts := newTestServer(t)
	alice, bob, mod := ts.register(t, "alice"), ts.register(t, "bob"), ts.register(t, "mod")
	rid := ts.createRoom(t, alice, map[string]any{"preset": "public_chat"})
	covJoin(t, ts, bob, rid)
	covJoin(t, ts, mod, rid)
	pl := ts.do(t, "GET", covRoomPath(rid)+"/state/m.room.power_levels", alice.Token, nil)
	pl.wantStatus(t, 200)
	content := pl.json(t)
	content["redact"] = 100
	users := content["users"].(map[string]any)
	users[mod.ID] = 50
	ts.do(t, "PUT", covRoomPath(rid)+"/state/m.room.power_levels", alice.Token, content).wantStatus(t, 200)

	bobMsg := ts.send(t, bob, rid, "b1", "bob's words")
	modMsg := ts.send(t, mod, rid, "m1", "mod's words")
	redact := func(u *testUser, eventID, txn string) *response {
		return ts.do(t, "PUT", covRoomPath(rid)+"/redact/"+url.PathEscape(eventID)+"/"+txn, u.Token, map[string]any{"reason": "test"})
	}
	event := func(id string) map[string]any {
		t.Helper()
		r := ts.do(t, "GET", covRoomPath(rid)+"/event/"+url.PathEscape(id), alice.Token, nil)
		r.wantStatus(t, 200)
		return r.json(t)
	}
	redacted := func(ev map[string]any) bool {
		c, _ := ev["content"].(map[string]any)
		u, _ := ev["unsigned"].(map[string]any)
		return len(c) == 0 && u["redacted_because"] != nil
	}

	redact(mod, bobMsg, "r1").wantError(t, 403, "M_FORBIDDEN")
	redact(bob, modMsg, "r2").wantError(t, 403, "M_FORBIDDEN")
	if ev := event(bobMsg); redacted(ev) {
		t.Fatalf("a refused redaction redacted the event: %v", ev)
	}
	redact(mod, modMsg, "r3").wantStatus(t, 200)
	if ev := event(modMsg); !redacted(ev) {
		t.Errorf("mod's own event after redacting it: %v", ev)
	}
	redact(alice, bobMsg, "r4").wantStatus(t, 200)
	if ev := event(bobMsg); !redacted(ev) {
		t.Errorf("bob's event after alice (100) redacted it: %v", ev)
	}

	// A redacted state event stays in the state with its content stripped.
	topic := ts.do(t, "PUT", covRoomPath(rid)+"/state/m.room.topic", alice.Token, map[string]any{"topic": "secret plans"})
	topic.wantStatus(t, 200)
	topicID := topic.str(t, "event_id")
	redact(alice, topicID, "r5").wantStatus(t, 200)
	r := ts.do(t, "GET", covRoomPath(rid)+"/state", alice.Token, nil)
	r.wantStatus(t, 200)
	var found map[string]any
	for _, e := range covList(t, r.Body) {
		if e["type"] == "m.room.topic" {
			found = e
		}
	}
	if found == nil || found["event_id"] != topicID {
		t.Fatalf("m.room.topic in /state: %v, want the redacted %s", found, topicID)
	}
	if c, _ := found["content"].(map[string]any); len(c) != 0 {
		t.Errorf("redacted topic's content in /state: %v, want {}", c)
	}
	r = ts.do(t, "GET", covRoomPath(rid)+"/state/m.room.topic", alice.Token, nil)
	r.wantStatus(t, 200)
	if c := r.json(t); len(c) != 0 {
		t.Errorf("GET /state/m.room.topic after redaction: %v, want {}", c)
	}
}

// covList decodes a JSON array of objects.
func covList(t *testing.T, body []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("body is not a list of objects: %v: %.300s", err, body)
	}
	return out
}

// TestStateKeys covers PUT/GET /rooms/{roomId}/state/{eventType}/{stateKey}
// (room_state.yaml) with state keys holding '/', '%' and nothing at all.
func TestStateKeys(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	rid := ts.createRoom(t, alice, nil)
	const typ = "org.example.cov"
	keys := []string{"a/b", "/lead", "a/b/c", "50%", "plain", ""}
	for _, k := range keys {
		ts.do(t, "PUT", covRoomPath(rid)+"/state/"+typ+"/"+url.PathEscape(k), alice.Token, map[string]any{"key": k}).wantStatus(t, 200)
	}
	for _, k := range keys {
		r := ts.do(t, "GET", covRoomPath(rid)+"/state/"+typ+"/"+url.PathEscape(k), alice.Token, nil)
		r.wantStatus(t, 200)
		if got := r.json(t)["key"]; got != k {
			t.Errorf("GET state key %q: content key %v", k, got)
		}
	}
	// Without the trailing slash the state key is empty too.
	r := ts.do(t, "GET", covRoomPath(rid)+"/state/"+typ, alice.Token, nil)
	r.wantStatus(t, 200)
	if got := r.json(t)["key"]; got != "" {
		t.Errorf("GET state without a key: content %v, want the empty key's", got)
	}
	ts.do(t, "PUT", covRoomPath(rid)+"/state/"+typ, alice.Token, map[string]any{"key": "", "v": 2}).wantStatus(t, 200)
	r = ts.do(t, "GET", covRoomPath(rid)+"/state/"+typ+"/", alice.Token, nil)
	r.wantStatus(t, 200)
	if got := r.json(t)["v"]; got != float64(2) {
		t.Errorf("empty key after PUT without slash: v=%v, want 2", got)
	}
	// '/' unescaped reaches the same state key (the rest of the path).
	r = ts.do(t, "GET", covRoomPath(rid)+"/state/"+typ+"/a/b", alice.Token, nil)
	r.wantStatus(t, 200)
	if got := r.json(t)["key"]; got != "a/b" {
		t.Errorf("GET state a/b unescaped: %v", got)
	}
	ts.do(t, "GET", covRoomPath(rid)+"/state/"+typ+"/a", alice.Token, nil).wantError(t, 404, "M_NOT_FOUND")

	r = ts.do(t, "GET", covRoomPath(rid)+"/state", alice.Token, nil)
	r.wantStatus(t, 200)
	got := map[string]map[string]any{}
	for _, e := range covList(t, r.Body) {
		if e["type"] == typ {
			sk, ok := e["state_key"].(string)
			if !ok {
				t.Errorf("state event without a string state_key: %v", e)
			}
			if _, dup := got[sk]; dup {
				t.Errorf("state key %q twice in /state", sk)
			}
			got[sk], _ = e["content"].(map[string]any)
		}
	}
	if len(got) != len(keys) {
		t.Errorf("/state has %d %s events, want %d: %v", len(got), typ, len(keys), got)
	}
	for _, k := range keys {
		if c, ok := got[k]; !ok || c["key"] != k {
			t.Errorf("/state: key %q has content %v", k, c)
		}
	}
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
