package matrix_test

import (
	"encoding/json"
	"net/url"
	"testing"
)

// Long polls woken by one commit share one reading of the span since their
// token (which change-log kinds it holds); what each user gets from it
// stays their own. Alice and Bob sync from the same token to the same
// position, Alice first, so Bob's sync finds the span's answer already
// read: Bob's private account data and private receipt reach Bob only,
// his presence reaches both, the message both; and a later span holding
// only a message gives neither any account data, presence or receipt.
func TestSyncSharedSpanKeepsUsersApart(t *testing.T) {
	ts := newTestServer(t)
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	roomID := ts.createRoom(t, alice, map[string]any{"preset": "public_chat"})
	ts.do(t, "POST", covV3+"/join/"+url.PathEscape(roomID), bob.Token, map[string]any{}).wantStatus(t, 200)
	// Each keeps one presence (online, unavailable) so their syncs store
	// no presence change: both then sync to the same position.
	sync := func(u *testUser, presence, since string) syncBody {
		t.Helper()
		p := covV3 + "/sync?timeout=0&set_presence=" + presence
		if since != "" {
			p += "&since=" + url.QueryEscape(since)
		}
		r := ts.do(t, "GET", p, u.Token, nil)
		r.wantStatus(t, 200)
		var b syncBody
		if err := json.Unmarshal(r.Body, &b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	sync(alice, "online", "")
	sync(bob, "unavailable", "")
	since := sync(alice, "online", "").NextBatch

	msg := ts.send(t, alice, roomID, "m1", "hello")
	ts.do(t, "PUT", covV3+"/user/"+url.PathEscape(bob.ID)+"/account_data/org.example.private", bob.Token,
		map[string]any{"secret": 1}).wantStatus(t, 200)
	ts.do(t, "PUT", covV3+"/presence/"+url.PathEscape(bob.ID)+"/status", bob.Token,
		map[string]any{"presence": "unavailable", "status_msg": "lunch"}).wantStatus(t, 200)
	ts.do(t, "POST", covV3+"/rooms/"+url.PathEscape(roomID)+"/receipt/m.read.private/"+url.PathEscape(msg), bob.Token,
		map[string]any{}).wantStatus(t, 200)

	a, b := sync(alice, "online", since), sync(bob, "unavailable", since)
	if a.NextBatch != b.NextBatch {
		t.Fatalf("the syncs reached different positions (%s, %s): the span was not shared", a.NextBatch, b.NextBatch)
	}
	for who, resp := range map[string]syncBody{"alice": a, "bob": b} {
		if !resp.hasMessage(roomID, msg) {
			t.Errorf("%s's sync lacks the message", who)
		}
		if resp.presenceMsg(bob.ID) != "lunch" {
			t.Errorf("%s's sync lacks bob's presence: %+v", who, resp.Presence)
		}
	}
	if a.hasAccountData("org.example.private") {
		t.Error("alice got bob's account data")
	}
	if !b.hasAccountData("org.example.private") {
		t.Error("bob's sync lacks his account data")
	}
	if a.hasPrivateReceipt(roomID, bob.ID) {
		t.Error("alice got bob's private receipt")
	}
	if !b.hasPrivateReceipt(roomID, bob.ID) {
		t.Error("bob's sync lacks his private receipt")
	}

	since = a.NextBatch
	msg2 := ts.send(t, alice, roomID, "m2", "again")
	a, b = sync(alice, "online", since), sync(bob, "unavailable", since)
	for who, resp := range map[string]syncBody{"alice": a, "bob": b} {
		if !resp.hasMessage(roomID, msg2) {
			t.Errorf("%s's second sync lacks the message", who)
		}
		if len(resp.AccountData.Events) != 0 || len(resp.Presence.Events) != 0 || resp.hasPrivateReceipt(roomID, bob.ID) {
			t.Errorf("%s's second sync repeats account data, presence or receipts: %+v %+v", who, resp.AccountData, resp.Presence)
		}
	}
}

// syncBody is the part of a /sync response the span test reads.
type syncBody struct {
	NextBatch   string `json:"next_batch"`
	AccountData struct {
		Events []struct {
			Type string `json:"type"`
		} `json:"events"`
	} `json:"account_data"`
	Presence struct {
		Events []struct {
			Sender  string `json:"sender"`
			Content struct {
				StatusMsg string `json:"status_msg"`
			} `json:"content"`
		} `json:"events"`
	} `json:"presence"`
	Rooms struct {
		Join map[string]struct {
			Timeline struct {
				Events []struct {
					EventID string `json:"event_id"`
				} `json:"events"`
			} `json:"timeline"`
			Ephemeral struct {
				Events []struct {
					Type    string                               `json:"type"`
					Content map[string]map[string]map[string]any `json:"content"`
				} `json:"events"`
			} `json:"ephemeral"`
		} `json:"join"`
	} `json:"rooms"`
}

func (b syncBody) hasMessage(roomID, eventID string) bool {
	for _, ev := range b.Rooms.Join[roomID].Timeline.Events {
		if ev.EventID == eventID {
			return true
		}
	}
	return false
}

func (b syncBody) hasAccountData(typ string) bool {
	for _, ev := range b.AccountData.Events {
		if ev.Type == typ {
			return true
		}
	}
	return false
}

func (b syncBody) presenceMsg(userID string) string {
	for _, ev := range b.Presence.Events {
		if ev.Sender == userID {
			return ev.Content.StatusMsg
		}
	}
	return ""
}

// hasPrivateReceipt reports an m.read.private receipt of userID in the
// room's ephemeral events (content: event ID → receipt type → user).
func (b syncBody) hasPrivateReceipt(roomID, userID string) bool {
	for _, ev := range b.Rooms.Join[roomID].Ephemeral.Events {
		if ev.Type != "m.receipt" {
			continue
		}
		for _, types := range ev.Content {
			if _, ok := types["m.read.private"][userID]; ok {
				return true
			}
		}
	}
	return false
}
