package matrix_test

import (
	"encoding/json"
	"net/url"
	"testing"
)

// TestRoomInitialSync covers GET /rooms/{roomId}/initialSync
// (room_initial_sync.yaml): state, the latest messages oldest first with a
// token to page back, membership, visibility, room account data, the
// members' presence and the receipts; a member who left sees the room up
// to their leave and an outsider nothing.
func TestRoomInitialSync(t *testing.T) {
	ts := newTestServer(t)
	c := specChecker{ts, loadSpec(t)}
	alice, bob, carol := ts.register(t, "alice"), ts.register(t, "bob"), ts.register(t, "carol")
	roomID := ts.createRoom(t, alice, map[string]any{"preset": "public_chat", "name": "Kitchen"})
	rid := url.PathEscape(roomID)
	covJoin(t, ts, bob, roomID)
	var sent []string
	for i, text := range []string{"one", "two", "three"} {
		sent = append(sent, ts.send(t, alice, roomID, "is"+string(rune('a'+i)), text))
	}
	ts.do(t, "POST", v3+"/rooms/"+rid+"/receipt/m.read/"+url.PathEscape(sent[1]), bob.Token, map[string]any{}).wantStatus(t, 200)
	ts.do(t, "PUT", v3+"/user/"+url.PathEscape(alice.ID)+"/rooms/"+rid+"/account_data/m.tag", alice.Token,
		map[string]any{"tags": map[string]any{"u.cooking": map[string]any{}}}).wantStatus(t, 200)

	path := v3 + "/rooms/" + rid + "/initialSync"
	r := c.call(t, "GET", path, alice.Token, nil)
	r.wantStatus(t, 200)
	var got struct {
		RoomID     string `json:"room_id"`
		Membership string `json:"membership"`
		Visibility string `json:"visibility"`
		Messages   struct {
			Start string `json:"start"`
			End   string `json:"end"`
			Chunk []struct {
				EventID string `json:"event_id"`
			} `json:"chunk"`
		} `json:"messages"`
		State []struct {
			Type string `json:"type"`
		} `json:"state"`
		AccountData []struct {
			Type string `json:"type"`
		} `json:"account_data"`
		Presence []struct {
			Sender string `json:"sender"`
		} `json:"presence"`
		Receipts []struct {
			Type    string                               `json:"type"`
			Content map[string]map[string]map[string]any `json:"content"`
		} `json:"receipts"`
	}
	if err := json.Unmarshal(r.Body, &got); err != nil {
		t.Fatal(err)
	}
	if got.RoomID != roomID || got.Membership != "join" || got.Visibility != "private" || got.Messages.End == "" {
		t.Errorf("room_id %q membership %q visibility %q end %q", got.RoomID, got.Membership, got.Visibility, got.Messages.End)
	}
	n := len(got.Messages.Chunk)
	if n < 3 || got.Messages.Chunk[n-1].EventID != sent[2] || got.Messages.Chunk[n-2].EventID != sent[1] {
		t.Errorf("messages chunk does not end with the latest messages in order: %s", r.Body)
	}
	types := map[string]bool{}
	for _, ev := range got.State {
		types[ev.Type] = true
	}
	if !types["m.room.create"] || !types["m.room.name"] || !types["m.room.member"] {
		t.Errorf("state types %v", types)
	}
	if len(got.AccountData) != 1 || got.AccountData[0].Type != "m.tag" {
		t.Errorf("account_data %+v", got.AccountData)
	}
	senders := map[string]bool{}
	for _, p := range got.Presence {
		senders[p.Sender] = true
	}
	if !senders[alice.ID] || !senders[bob.ID] {
		t.Errorf("presence of %v, want alice and bob", senders)
	}
	if len(got.Receipts) != 1 || got.Receipts[0].Type != "m.receipt" || got.Receipts[0].Content[sent[1]]["m.read"][bob.ID] == nil {
		t.Errorf("receipts %s", r.Body)
	}

	// A smaller page has a token to go back with.
	r = c.call(t, "GET", path+"?limit=2", alice.Token, nil)
	got.Messages.Start, got.Messages.Chunk = "", nil
	json.Unmarshal(r.Body, &got)
	if len(got.Messages.Chunk) != 2 || got.Messages.Start == "" || got.Messages.Chunk[1].EventID != sent[2] {
		t.Errorf("limit=2: %s", r.Body)
	}
	ts.do(t, "GET", v3+"/rooms/"+rid+"/messages?dir=b&from="+url.QueryEscape(got.Messages.Start), alice.Token, nil).wantStatus(t, 200)
	c.call(t, "GET", path+"?limit=x", alice.Token, nil).wantError(t, 400, "M_INVALID_PARAM")

	// carol never joined this (not world-readable) room.
	c.call(t, "GET", path, carol.Token, nil).wantError(t, 403, "M_FORBIDDEN")
	c.call(t, "GET", v3+"/rooms/"+url.PathEscape("!nowhere:test.local")+"/initialSync", alice.Token, nil).wantError(t, 403, "M_FORBIDDEN")
	c.call(t, "GET", path, "", nil).wantError(t, 401, "M_MISSING_TOKEN")

	// bob leaves; what alice sends after is not his to see.
	ts.do(t, "POST", v3+"/rooms/"+rid+"/leave", bob.Token, map[string]any{}).wantStatus(t, 200)
	after := ts.send(t, alice, roomID, "after", "bob has gone")
	r = c.call(t, "GET", path, bob.Token, nil)
	r.wantStatus(t, 200)
	got.Membership, got.Messages.Chunk = "", nil
	json.Unmarshal(r.Body, &got)
	if got.Membership != "leave" {
		t.Errorf("bob's membership after leaving: %q", got.Membership)
	}
	for _, ev := range got.Messages.Chunk {
		if ev.EventID == after {
			t.Errorf("bob sees a message sent after he left")
		}
	}
}

// TestThirdPartyLookups: a server without bridges knows no third-party
// protocol (third_party_lookup.yaml).
func TestThirdPartyLookups(t *testing.T) {
	ts := newTestServer(t)
	c := specChecker{ts, loadSpec(t)}
	alice := ts.register(t, "alice")
	r := c.call(t, "GET", v3+"/thirdparty/protocols", alice.Token, nil)
	r.wantStatus(t, 200)
	if string(r.Body) != "{}\n" {
		t.Errorf("protocols: %s, want {}", r.Body)
	}
	for _, p := range []string{"/thirdparty/protocol/irc", "/thirdparty/location/irc?searchFields=x", "/thirdparty/user/irc"} {
		c.call(t, "GET", v3+p, alice.Token, nil).wantError(t, 404, "M_NOT_FOUND")
	}
	for _, p := range []string{"/thirdparty/location?alias=" + url.QueryEscape("#a:test.local"), "/thirdparty/user?userid=" + url.QueryEscape(alice.ID)} {
		r := c.call(t, "GET", v3+p, alice.Token, nil)
		r.wantStatus(t, 200)
		if string(r.Body) != "[]\n" {
			t.Errorf("%s: %s, want []", p, r.Body)
		}
	}
	c.call(t, "GET", v3+"/thirdparty/protocols", "", nil).wantError(t, 401, "M_MISSING_TOKEN")
}

// TestRoomInitialSyncTxnID: the messages of GET /initialSync show the
// sending session its unsigned.transaction_id, as every other read of the
// timeline does (Client-Server API §"Transaction identifiers"): the
// transaction scope is the login session, not the device ID.
func TestRoomInitialSyncTxnID(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	roomID := ts.createRoom(t, alice, nil)
	covSend(t, ts, alice, roomID, "m.room.message", "txn1", map[string]any{"msgtype": "m.text", "body": "hi"})
	r := ts.do(t, "GET", v3+"/rooms/"+url.PathEscape(roomID)+"/initialSync", alice.Token, nil)
	r.wantStatus(t, 200)
	var got struct {
		Messages struct {
			Chunk []struct {
				Type     string         `json:"type"`
				Unsigned map[string]any `json:"unsigned"`
			} `json:"chunk"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(r.Body, &got); err != nil {
		t.Fatal(err)
	}
	chunk := got.Messages.Chunk
	if len(chunk) == 0 || chunk[len(chunk)-1].Type != "m.room.message" {
		t.Fatalf("last message is not the one sent: %+v", chunk)
	}
	if txn := chunk[len(chunk)-1].Unsigned["transaction_id"]; txn != "txn1" {
		t.Errorf("sender's initialSync: transaction_id %v, want txn1", txn)
	}
}
