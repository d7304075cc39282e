package e2e

import (
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// ephemeral returns the room's ephemeral events of type typ in resp.
func ephemeral(resp *mautrix.RespSync, roomID id.RoomID, typ event.Type) []*event.Event {
	jr := resp.Rooms.Join[roomID]
	if jr == nil {
		return nil
	}
	var out []*event.Event
	for _, ev := range jr.Ephemeral.Events {
		if ev.Type.Type == typ.Type {
			out = append(out, ev)
		}
	}
	return out
}

// typingUsers is the user_ids of an m.typing event.
func typingUsers(ev *event.Event) []id.UserID {
	list, _ := ev.Content.Raw["user_ids"].([]any)
	var out []id.UserID
	for _, u := range list {
		s, _ := u.(string)
		out = append(out, id.UserID(s))
	}
	return out
}

// receiptBy reports whether an m.receipt event holds a receipt of typ by
// user for eventID.
func receiptBy(ev *event.Event, eventID id.EventID, typ string, user id.UserID) bool {
	byType, _ := ev.Content.Raw[eventID.String()].(map[string]any)
	byUser, _ := byType[typ].(map[string]any)
	_, ok := byUser[user.String()]
	return ok
}

// TestTypingReceiptsReadMarkers checks that typing notifications and read
// receipts reach the other user's /sync ephemeral section, and that the
// fully-read marker is stored as room account data.
func TestTypingReceiptsReadMarkers(t *testing.T) {
	t.Parallel()
	d := StartDaemon(t)
	alice, bob := d.Register("alice"), d.Register("bob")
	roomID := PublicRoom(t, alice, bob)
	aliceTok := Quiesce(t, alice, Sync(t, alice, "", "", 0).NextBatch)
	bobTok := Quiesce(t, bob, Sync(t, bob, "", "", 0).NextBatch)

	// Typing starts.
	_, err := alice.UserTyping(ctx(t), roomID, true, 20*time.Second)
	noErr(t, err, "alice starts typing")
	bobTok = SyncUntil(t, bob, bobTok, "", "alice typing", func(r *mautrix.RespSync) bool {
		for _, ev := range ephemeral(r, roomID, event.EphemeralEventTyping) {
			if slices.Contains(typingUsers(ev), alice.UserID) {
				return true
			}
		}
		return false
	}).NextBatch

	// Typing stops: bob gets an m.typing without alice.
	_, err = alice.UserTyping(ctx(t), roomID, false, 0)
	noErr(t, err, "alice stops typing")
	bobTok = SyncUntil(t, bob, bobTok, "", "alice stopped typing", func(r *mautrix.RespSync) bool {
		evs := ephemeral(r, roomID, event.EphemeralEventTyping)
		return len(evs) > 0 && !slices.Contains(typingUsers(evs[len(evs)-1]), alice.UserID)
	}).NextBatch

	// Outsiders may not type into the room.
	carol := d.Register("carol")
	_, err = carol.UserTyping(ctx(t), roomID, true, time.Second)
	wantMatrixErr(t, err, 403, "M_FORBIDDEN", "outsider types")

	// A read receipt from bob reaches alice.
	eid := SendText(t, alice, roomID, "please read me")
	bobTok = SyncUntil(t, bob, bobTok, "", "alice's message", func(r *mautrix.RespSync) bool {
		return TimelineHas(r, roomID, eid)
	}).NextBatch
	noErr(t, bob.SendReceipt(ctx(t), roomID, eid, event.ReceiptTypeRead, nil), "bob sends a read receipt")
	SyncUntil(t, alice, aliceTok, "", "bob's read receipt", func(r *mautrix.RespSync) bool {
		for _, ev := range ephemeral(r, roomID, event.EphemeralEventReceipt) {
			if receiptBy(ev, eid, "m.read", bob.UserID) {
				return true
			}
		}
		return false
	})
	// A new device's initial sync has the receipt too.
	found := false
	for _, ev := range ephemeral(Sync(t, d.Login("alice"), "", "", 0), roomID, event.EphemeralEventReceipt) {
		found = found || receiptBy(ev, eid, "m.read", bob.UserID)
	}
	if !found {
		t.Errorf("bob's receipt missing from alice's initial sync")
	}

	// Read markers: m.fully_read becomes room account data; m.read a receipt.
	eid2 := SendText(t, alice, roomID, "read up to here")
	noErr(t, bob.SetReadMarkers(ctx(t), roomID, map[string]any{
		"m.fully_read": eid2, "m.read": eid2,
	}), "bob sets read markers")
	var marker struct {
		EventID id.EventID `json:"event_id"`
	}
	noErr(t, bob.GetRoomAccountData(ctx(t), roomID, "m.fully_read", &marker), "bob reads m.fully_read")
	if marker.EventID != eid2 {
		t.Errorf("m.fully_read account data: %q, want %s", marker.EventID, eid2)
	}
	SyncUntil(t, bob, bobTok, "", "m.fully_read in room account_data", func(r *mautrix.RespSync) bool {
		jr := r.Rooms.Join[roomID]
		if jr == nil {
			return false
		}
		for _, ev := range jr.AccountData.Events {
			if ev.Type.Type == "m.fully_read" && ev.Content.Raw["event_id"] == eid2.String() {
				return true
			}
		}
		return false
	})
	// Alice sees bob's m.read from the read_markers call, but never his m.fully_read.
	r := Sync(t, alice, "", "", 0)
	found = false
	for _, ev := range ephemeral(r, roomID, event.EphemeralEventReceipt) {
		found = found || receiptBy(ev, eid2, "m.read", bob.UserID)
		if receiptBy(ev, eid2, "m.fully_read", bob.UserID) {
			t.Errorf("bob's m.fully_read leaked to alice as a receipt")
		}
	}
	if !found {
		t.Errorf("bob's m.read from /read_markers missing from alice's sync")
	}
	if jr := r.Rooms.Join[roomID]; jr != nil {
		for _, ev := range jr.AccountData.Events {
			if ev.Type.Type == "m.fully_read" {
				t.Errorf("alice's sync has an m.fully_read: %v", ev.Content.Raw)
			}
		}
	}
}

// TestReceiptNeverMovesBack: bob reads on his phone, then his laptop,
// which had not caught up, sends a receipt for an older message. His
// receipt stays where it was, as alice sees it and as his unread count
// says, and neither his older public receipt nor his older private one
// moves anything.
func TestReceiptNeverMovesBack(t *testing.T) {
	t.Parallel()
	d := StartDaemon(t)
	alice, phone := d.Register("alice"), d.Register("bob")
	laptop := d.Login("bob")
	roomID := PublicRoom(t, alice, phone)
	older := SendText(t, alice, roomID, "the first of two")
	newer := SendText(t, alice, roomID, "the second of two")
	unread := func(r *mautrix.RespSync) int {
		if jr := r.Rooms.Join[roomID]; jr != nil && jr.UnreadNotifications != nil {
			return jr.UnreadNotifications.NotificationCount
		}
		return -1
	}
	tok := SyncUntil(t, phone, "", "", "two unread messages", func(r *mautrix.RespSync) bool { return unread(r) == 2 }).NextBatch
	noErr(t, phone.SendReceipt(ctx(t), roomID, newer, event.ReceiptTypeRead, nil), "the phone reads both")
	tok = SyncUntil(t, phone, tok, "", "nothing unread", func(r *mautrix.RespSync) bool { return unread(r) == 0 }).NextBatch

	noErr(t, laptop.SendReceipt(ctx(t), roomID, older, event.ReceiptTypeRead, nil), "the laptop's late public receipt")
	noErr(t, laptop.SendReceipt(ctx(t), roomID, older, event.ReceiptTypeReadPrivate, nil), "the laptop's late private receipt")
	// The private receipt is not older than any private one: it moves,
	// and its change is what the next /sync waits for. Nothing becomes
	// unread: the public receipt still covers both messages.
	r := SyncUntil(t, phone, tok, "", "the private receipt", func(r *mautrix.RespSync) bool {
		for _, ev := range ephemeral(r, roomID, event.EphemeralEventReceipt) {
			if receiptBy(ev, older, "m.read.private", phone.UserID) {
				return true
			}
		}
		return false
	})
	if n := unread(r); n != 0 && n != -1 {
		t.Errorf("after the late receipts bob has %d unread, want 0", n)
	}
	if n := unread(Sync(t, phone, "", "", 0)); n != 0 {
		t.Errorf("a fresh sync counts %d unread for bob, want 0", n)
	}
	for _, ev := range ephemeral(Sync(t, alice, "", "", 0), roomID, event.EphemeralEventReceipt) {
		if receiptBy(ev, older, "m.read", phone.UserID) {
			t.Errorf("alice sees bob's receipt moved back to the older message")
		}
		if !receiptBy(ev, newer, "m.read", phone.UserID) {
			t.Errorf("alice no longer sees bob's receipt on the newer message: %v", ev.Content.Raw)
		}
	}
}
