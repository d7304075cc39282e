package matrix_test

// Tests for relations and receipts, and the cov* helpers that
// directory_test.go and roomstate_test.go share. Each settles behaviour
// against the spec's OpenAPI files in matrix-spec/data/api/client-server.

import (
	"fmt"
	"net/url"
	"slices"
	"sort"
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
