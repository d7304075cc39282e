package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// TestFederationReceiptsMoveOnlyForward, against the strict
// gomatrixserverlib test peer: mallory's server sends his receipt for the
// newer of two messages, then a late one for the older; alice still sees
// it on the newer. alice's own late receipt goes nowhere: the peer hears
// her first receipt and, after it, her typing, but no second receipt.
// And an m.direct_to_device EDU whose message_id is over 32 code points
// is dropped, while one of 32 is delivered.
func TestFederationReceiptsMoveOnlyForward(t *testing.T) {
	t.Parallel()
	peer, hs1 := startWithPeer(t, true)
	alice := hs1.Register("alice")
	room := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	peer.join("mallory", room.String())
	mallory := id.UserID(peer.mallory())
	older := SendText(t, alice, room, "the first of two")
	newer := SendText(t, alice, room, "the second of two")
	tok := Quiesce(t, alice, Sync(t, alice, "", "", 0).NextBatch)

	receipt := func(eventID id.EventID) gomatrixserverlib.EDU {
		return edu("m.receipt", map[string]any{room.String(): map[string]any{"m.read": map[string]any{
			mallory.String(): map[string]any{"event_ids": []id.EventID{eventID}, "data": map[string]any{"ts": 1}}}}})
	}
	peer.sendEDUs(receipt(newer))
	tok = SyncUntil(t, alice, tok, "", "mallory's receipt", func(r *mautrix.RespSync) bool {
		for _, ev := range ephemeral(r, room, event.EphemeralEventReceipt) {
			if receiptBy(ev, newer, "m.read", mallory) {
				return true
			}
		}
		return false
	}).NextBatch
	// The late receipt, then typing in the same /send: its EDUs apply in
	// order, so once the typing shows the receipt has been dealt with.
	peer.sendEDUs(receipt(older), edu("m.typing", map[string]any{"room_id": room, "user_id": mallory, "typing": true}))
	SyncUntil(t, alice, tok, "", "mallory typing", func(r *mautrix.RespSync) bool {
		for _, ev := range ephemeral(r, room, event.EphemeralEventTyping) {
			for _, u := range typingUsers(ev) {
				if u == mallory {
					return true
				}
			}
		}
		return false
	})
	for _, ev := range ephemeral(Sync(t, alice, "", "", 0), room, event.EphemeralEventReceipt) {
		if receiptBy(ev, older, "m.read", mallory) || !receiptBy(ev, newer, "m.read", mallory) {
			t.Errorf("mallory's receipt as alice sees it after his late one: %v, want it on the newer message", ev.Content.Raw)
		}
	}

	// alice's receipts: the newer one reaches the peer, the late older
	// one does not; her typing, sent after both, shows the queue passed.
	noErr(t, alice.SendReceipt(ctx(t), room, newer, event.ReceiptTypeRead, nil), "alice reads both")
	peerHad(t, peer, "edu m.receipt")
	noErr(t, alice.SendReceipt(ctx(t), room, older, event.ReceiptTypeRead, nil), "alice's late receipt")
	_, err := alice.UserTyping(ctx(t), room, true, 10*time.Second)
	noErr(t, err, "alice types")
	peerHad(t, peer, "edu m.typing")
	if n := peer.called("edu m.receipt"); n != 1 {
		t.Errorf("the peer got %d receipt EDUs, want 1: the late receipt was sent", n)
	}

	// One /send, the long ID first: once the other is delivered, the
	// long one has been dealt with.
	toDevice := func(msgID string) gomatrixserverlib.EDU {
		return edu("m.direct_to_device", map[string]any{"sender": mallory, "type": "org.example.hello", "message_id": msgID,
			"messages": map[string]any{alice.UserID.String(): map[string]any{alice.DeviceID.String(): map[string]any{"id": msgID}}}})
	}
	limit := strings.Repeat("é", 32)
	peer.sendEDUs(toDevice(strings.Repeat("x", 33)), toDevice(limit))
	var got []string
	SyncUntil(t, alice, "", "", "mallory's to-device message", func(r *mautrix.RespSync) bool {
		for _, ev := range r.ToDevice.Events {
			got = append(got, ev.Content.Raw["id"].(string))
		}
		return len(got) > 0
	})
	if len(got) != 1 || got[0] != limit {
		t.Errorf("to-device messages alice got: %q, want only the one whose message_id has 32 code points", got)
	}
}

// peerHad waits until the daemon has sent the peer a request named name.
func peerHad(t *testing.T, peer *fedPeer, name string) {
	t.Helper()
	waitFor(t, "the peer to get "+name, func() (int, bool) { n := peer.called(name); return n, n > 0 })
}
