package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// TestTxnIDIdempotency checks that a repeated transaction ID is the same
// send: the same event ID and one event, while another device's equal txn
// ID is a different send (txn IDs are scoped to the device).
func TestTxnIDIdempotency(t *testing.T) {
	t.Parallel()
	d := StartDaemon(t)
	alice := d.Register("alice")
	roomID := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})

	send := func(c *mautrix.Client, txn, b string) id.EventID {
		t.Helper()
		resp, err := c.SendMessageEvent(ctx(t), roomID, event.EventMessage,
			map[string]any{"msgtype": "m.text", "body": b}, mautrix.ReqSendEvent{TransactionID: txn})
		noErr(t, err, "send txn %s", txn)
		return resp.EventID
	}
	first := send(alice, "txn-1", "once")
	second := send(alice, "txn-1", "once")
	if first != second {
		t.Fatalf("same txn ID gave two events: %s and %s", first, second)
	}
	// Even with a different body the txn ID names the first send.
	if third := send(alice, "txn-1", "changed"); third != first {
		t.Fatalf("same txn ID with another body gave %s, want %s", third, first)
	}
	other := send(d.Login("alice"), "txn-1", "once")
	if other == first {
		t.Fatalf("another device's txn-1 returned the first device's event %s", first)
	}

	count := 0
	for _, ev := range History(t, alice, roomID, "", 50) {
		if ev.ID == first {
			count++
		}
		if body(ev) == "changed" {
			t.Errorf("the resent body was stored as event %s", ev.ID)
		}
	}
	if count != 1 {
		t.Fatalf("event %s appears %d times in /messages", first, count)
	}
	var n int
	for _, ev := range History(t, alice, roomID, "", 50) {
		if body(ev) == "once" {
			n++
		}
	}
	if n != 2 { // one per device
		t.Fatalf("%d events with body \"once\", want 2 (one per device)", n)
	}
}

// memberships maps user ID → membership from GET /members.
func memberships(t *testing.T, c *mautrix.Client, roomID id.RoomID) map[id.UserID]string {
	t.Helper()
	resp, err := c.Members(ctx(t), roomID)
	noErr(t, err, "/members as %s", c.UserID)
	out := map[id.UserID]string{}
	for _, ev := range resp.Chunk {
		m, _ := ev.Content.Raw["membership"].(string)
		out[id.UserID(ev.GetStateKey())] = m
	}
	return out
}

func joinedSet(t *testing.T, c *mautrix.Client, roomID id.RoomID) []id.UserID {
	t.Helper()
	resp, err := c.JoinedMembers(ctx(t), roomID)
	noErr(t, err, "/joined_members as %s", c.UserID)
	var out []id.UserID
	for u := range resp.Joined {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}

func sortedIDs(ids ...id.UserID) []id.UserID {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// TestMembership covers kick, ban, unban, leave and forget, what
// /joined_members and /members say after each, and that outsiders can
// neither read nor send.
func TestMembership(t *testing.T) {
	t.Parallel()
	d := StartDaemon(t)
	alice, bob, carol, dave := d.Register("alice"), d.Register("bob"), d.Register("carol"), d.Register("dave")
	roomID := PublicRoom(t, alice, bob, carol)
	SendText(t, alice, roomID, "hello members")

	if got, want := joinedSet(t, alice, roomID), sortedIDs(alice.UserID, bob.UserID, carol.UserID); !slices.Equal(got, want) {
		t.Fatalf("joined members: %v, want %v", got, want)
	}

	// A user who was never in the room can neither read nor send.
	_, err := dave.Messages(ctx(t), roomID, "", "", mautrix.DirectionBackward, nil, 10)
	wantMatrixErr(t, err, 403, "M_FORBIDDEN", "outsider reads /messages")
	_, err = dave.SendText(ctx(t), roomID, "let me in")
	wantMatrixErr(t, err, 403, "M_FORBIDDEN", "outsider sends")
	_, err = dave.JoinedMembers(ctx(t), roomID)
	wantMatrixErr(t, err, 403, "M_FORBIDDEN", "outsider reads /joined_members")

	// Kick: carol is out and cannot send.
	_, err = alice.KickUser(ctx(t), roomID, &mautrix.ReqKickUser{UserID: carol.UserID, Reason: "test kick"})
	noErr(t, err, "alice kicks carol")
	if m := memberships(t, alice, roomID)[carol.UserID]; m != "leave" {
		t.Errorf("carol's membership after kick: %q, want leave", m)
	}
	if got, want := joinedSet(t, alice, roomID), sortedIDs(alice.UserID, bob.UserID); !slices.Equal(got, want) {
		t.Errorf("joined members after kick: %v, want %v", got, want)
	}
	_, err = carol.SendText(ctx(t), roomID, "still here?")
	wantMatrixErr(t, err, 403, "M_FORBIDDEN", "kicked user sends")
	// Carol may still read what she saw (history_visibility shared) but
	// nothing after her kick.
	afterKick := SendText(t, alice, roomID, "said after carol was kicked")
	if page, err := carol.Messages(ctx(t), roomID, "", "", mautrix.DirectionBackward, nil, 50); err == nil {
		for _, ev := range page.Chunk {
			if ev.ID == afterKick {
				t.Errorf("kicked carol reads %s, sent after her kick", afterKick)
			}
		}
	} else {
		wantMatrixErr(t, err, 403, "M_FORBIDDEN", "kicked user reads /messages")
	}
	if _, err := carol.GetEvent(ctx(t), roomID, afterKick); err == nil {
		t.Errorf("kicked carol fetched %s, sent after her kick", afterKick)
	}
	// Bob may not kick alice (power level 0 vs 100).
	_, err = bob.KickUser(ctx(t), roomID, &mautrix.ReqKickUser{UserID: alice.UserID})
	wantMatrixErr(t, err, 403, "M_FORBIDDEN", "bob kicks the room's creator")

	// Ban: bob is out and cannot rejoin.
	_, err = alice.BanUser(ctx(t), roomID, &mautrix.ReqBanUser{UserID: bob.UserID, Reason: "test ban"})
	noErr(t, err, "alice bans bob")
	if m := memberships(t, alice, roomID)[bob.UserID]; m != "ban" {
		t.Errorf("bob's membership after ban: %q, want ban", m)
	}
	if got, want := joinedSet(t, alice, roomID), sortedIDs(alice.UserID); !slices.Equal(got, want) {
		t.Errorf("joined members after ban: %v, want %v", got, want)
	}
	_, err = bob.JoinRoomByID(ctx(t), roomID)
	wantMatrixErr(t, err, 403, "M_FORBIDDEN", "banned user rejoins")
	_, err = bob.SendText(ctx(t), roomID, "banned but talking")
	wantMatrixErr(t, err, 403, "M_FORBIDDEN", "banned user sends")

	// Unban: bob may join again.
	_, err = alice.UnbanUser(ctx(t), roomID, &mautrix.ReqUnbanUser{UserID: bob.UserID})
	noErr(t, err, "alice unbans bob")
	if m := memberships(t, alice, roomID)[bob.UserID]; m != "leave" {
		t.Errorf("bob's membership after unban: %q, want leave", m)
	}
	Join(t, bob, roomID)
	Join(t, carol, roomID) // a kick does not keep one out of a public room
	if got, want := joinedSet(t, bob, roomID), sortedIDs(alice.UserID, bob.UserID, carol.UserID); !slices.Equal(got, want) {
		t.Errorf("joined members after rejoins: %v, want %v", got, want)
	}
	SendText(t, bob, roomID, "back again")

	// Forgetting a room one is still in is refused.
	_, err = carol.ForgetRoom(ctx(t), roomID)
	wantMatrixErr(t, err, 400, "M_UNKNOWN", "forget while joined")

	// Leave, then forget.
	carolTok := Quiesce(t, carol, Sync(t, carol, "", "", 0).NextBatch)
	_, err = carol.LeaveRoom(ctx(t), roomID)
	noErr(t, err, "carol leaves")
	if m := memberships(t, alice, roomID)[carol.UserID]; m != "leave" {
		t.Errorf("carol's membership after leave: %q, want leave", m)
	}
	if got, want := joinedSet(t, alice, roomID), sortedIDs(alice.UserID, bob.UserID); !slices.Equal(got, want) {
		t.Errorf("joined members after leave: %v, want %v", got, want)
	}
	rooms, err := carol.JoinedRooms(ctx(t))
	noErr(t, err, "carol's joined rooms")
	if slices.Contains(rooms.JoinedRooms, roomID) {
		t.Errorf("carol's joined_rooms still lists %s after leaving", roomID)
	}
	SyncUntil(t, carol, carolTok, "", "carol's leave", func(r *mautrix.RespSync) bool {
		return r.Rooms.Leave[roomID] != nil
	})
	_, err = carol.SendText(ctx(t), roomID, "gone")
	wantMatrixErr(t, err, 403, "M_FORBIDDEN", "user who left sends")

	_, err = carol.ForgetRoom(ctx(t), roomID)
	noErr(t, err, "carol forgets the room")
	includeLeave := `{"room":{"include_leave":true}}`
	if r := Sync(t, carol, "", includeLeave, 0); r.Rooms.Leave[roomID] != nil || r.Rooms.Join[roomID] != nil {
		t.Errorf("a forgotten room is still in carol's initial sync with include_leave")
	}
	// The others are unaffected.
	if m := memberships(t, bob, roomID); m[alice.UserID] != "join" || m[bob.UserID] != "join" || m[carol.UserID] != "leave" {
		t.Errorf("/members after forget: %v", m)
	}
	// membership filters of /members.
	status, b := Raw(t, bob, http.MethodGet, "/_matrix/client/v3/rooms/"+url.PathEscape(roomID.String())+"/members?membership=join", nil)
	if status != 200 {
		t.Fatalf("/members?membership=join: %d %s", status, b)
	}
	var chunk struct {
		Chunk []struct {
			StateKey string `json:"state_key"`
		} `json:"chunk"`
	}
	json.Unmarshal(b, &chunk)
	var joined []id.UserID
	for _, ev := range chunk.Chunk {
		joined = append(joined, id.UserID(ev.StateKey))
	}
	slices.Sort(joined)
	if want := sortedIDs(alice.UserID, bob.UserID); !slices.Equal(joined, want) {
		t.Errorf("/members?membership=join: %v, want %v", joined, want)
	}
	status, b = Raw(t, bob, http.MethodGet, "/_matrix/client/v3/rooms/"+url.PathEscape(roomID.String())+"/members?not_membership=join", nil)
	chunk.Chunk = nil
	json.Unmarshal(b, &chunk)
	if status != 200 || len(chunk.Chunk) != 1 || chunk.Chunk[0].StateKey != carol.UserID.String() {
		t.Errorf("/members?not_membership=join: %d %s; want only carol", status, b)
	}
}

// TestRedaction checks that a redacted message loses its content
// everywhere it is served and carries unsigned.redacted_because.
func TestRedaction(t *testing.T) {
	t.Parallel()
	d := StartDaemon(t)
	alice, bob := d.Register("alice"), d.Register("bob")
	roomID := PublicRoom(t, alice, bob)
	secret := SendText(t, alice, roomID, "a secret to redact")
	kept := SendText(t, alice, roomID, "this one stays")
	bobTok := Quiesce(t, bob, Sync(t, bob, "", "", 0).NextBatch)

	red, err := alice.RedactEvent(ctx(t), roomID, secret, mautrix.ReqRedact{Reason: "oops"})
	noErr(t, err, "alice redacts")

	checkRedacted := func(where string, ev *event.Event) {
		t.Helper()
		if ev == nil {
			t.Fatalf("%s: redacted event missing", where)
		}
		if len(ev.Content.Raw) != 0 {
			t.Errorf("%s: redacted event still has content %v", where, ev.Content.Raw)
		}
		rb := ev.Unsigned.RedactedBecause
		if rb == nil {
			t.Fatalf("%s: no unsigned.redacted_because", where)
		}
		if rb.ID != red.EventID || rb.Type != event.EventRedaction {
			t.Errorf("%s: redacted_because is %s %s, want the redaction %s", where, rb.Type.Type, rb.ID, red.EventID)
		}
	}

	ev, err := bob.GetEvent(ctx(t), roomID, secret)
	noErr(t, err, "GET /event of the redacted event")
	checkRedacted("/event", ev)
	if ev, err := bob.GetEvent(ctx(t), roomID, kept); err != nil || body(ev) != "this one stays" {
		t.Errorf("the other message: %v, body %q", err, body(ev))
	}

	var inHistory *event.Event
	for _, ev := range History(t, bob, roomID, "", 20) {
		if ev.ID == secret {
			inHistory = ev
		}
	}
	checkRedacted("/messages", inHistory)

	// Incremental sync brings the redaction event itself.
	r := SyncUntil(t, bob, bobTok, "", "the redaction", func(r *mautrix.RespSync) bool {
		return TimelineHas(r, roomID, red.EventID)
	})
	for _, ev := range r.Rooms.Join[roomID].Timeline.Events {
		if ev.ID == red.EventID {
			if ev.Redacts != secret && ev.Content.Raw["redacts"] != secret.String() {
				t.Errorf("redaction event in /sync does not name %s: redacts %q, content %v", secret, ev.Redacts, ev.Content.Raw)
			}
			if reason, _ := ev.Content.Raw["reason"].(string); reason != "oops" {
				t.Errorf("redaction reason %q, want oops", reason)
			}
		}
	}
	// An initial sync serves the original already redacted.
	var inSync *event.Event
	for _, ev := range Sync(t, bob, "", `{"room":{"timeline":{"limit":50}}}`, 0).Rooms.Join[roomID].Timeline.Events {
		if ev.ID == secret {
			inSync = ev
		}
	}
	checkRedacted("initial /sync", inSync)

	// Bob may not redact alice's message (redact level 50).
	_, err = bob.RedactEvent(ctx(t), roomID, kept)
	wantMatrixErr(t, err, 403, "M_FORBIDDEN", "bob redacts alice's message")

	// Redactions survive a restart.
	d.Restart()
	ev, err = bob.GetEvent(ctx(t), roomID, secret)
	noErr(t, err, "GET /event after restart")
	checkRedacted("/event after restart", ev)
}
