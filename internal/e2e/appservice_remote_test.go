package e2e

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// sendEDUs sends the peer's EDUs to the daemon in one /send.
func (p *fedPeer) sendEDUs(edus ...gomatrixserverlib.EDU) {
	p.t.Helper()
	txn := gomatrixserverlib.Transaction{Origin: p.Name, OriginServerTS: spec.AsTimestamp(time.Now()),
		PDUs: []json.RawMessage{}, EDUs: edus}
	code, body := p.do("PUT", p.hs, "/_matrix/federation/v1/send/"+p.txnID(), txn, true)
	if code != http.StatusOK {
		p.t.Fatalf("/send of EDUs: %d %s", code, body)
	}
}

func edu(typ string, content any) gomatrixserverlib.EDU {
	b, _ := json.Marshal(content)
	return gomatrixserverlib.EDU{Type: typ, Content: b}
}

// TestAppserviceRemoteEphemeral: an appservice whose ghost shares a room
// with a user of another server (the gomatrixserverlib test peer)
// receives that user's typing, read receipt and presence in its
// transactions (MSC2409), as it does a local user's; and a local user's
// presence too.
func TestAppserviceRemoteEphemeral(t *testing.T) {
	t.Parallel()
	peer, hs1 := startWithPeer(t, false)
	alice := hs1.Register("alice")
	b := newTestBridge(t, hs1, "bridge")
	b.add(t, hs1)
	b.pingUntilUp(t)

	ghost := b.as.Intent(id.NewUserID("bridge_anna", hs1.ServerName()))
	noErr(t, ghost.EnsureRegistered(ctx(t)), "register the ghost")
	room := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Invite: []id.UserID{ghost.UserID}})
	_, err := ghost.JoinRoomByID(ctx(t), room)
	noErr(t, err, "the ghost joins")
	peer.join("mallory", room.String())
	mallory := id.UserID(peer.mallory())
	hello := SendText(t, alice, room, "hello everyone")

	// The peer speaking for alice is dropped before anything reaches the
	// appservice; the EDUs of one /send apply in order, so the first
	// typing event it gets is mallory's alone.
	peer.sendEDUs(edu("m.typing", map[string]any{"room_id": room, "user_id": alice.UserID, "typing": true}),
		edu("m.typing", map[string]any{"room_id": room, "user_id": mallory, "typing": true}))
	typing := b.waitEvent(t, "mallory typing", func(ev *event.Event) bool {
		return ev.Type == event.EphemeralEventTyping && ev.RoomID == room
	})
	if u := typing.Content.AsTyping().UserIDs; len(u) != 1 || u[0] != mallory {
		t.Fatalf("the first typing event at the appservice lists %v, want only %s", u, mallory)
	}
	peer.sendEDUs(edu("m.typing", map[string]any{"room_id": room, "user_id": mallory, "typing": false}))
	b.waitEvent(t, "mallory stopped typing", func(ev *event.Event) bool {
		return ev.Type == event.EphemeralEventTyping && ev.RoomID == room && len(ev.Content.AsTyping().UserIDs) == 0
	})

	peer.sendEDUs(edu("m.receipt", map[string]any{room.String(): map[string]any{"m.read": map[string]any{
		mallory.String(): map[string]any{"event_ids": []id.EventID{hello}, "data": map[string]any{"ts": 1}}}}}))
	b.waitEvent(t, "mallory's receipt", func(ev *event.Event) bool {
		if ev.Type != event.EphemeralEventReceipt || ev.RoomID != room {
			return false
		}
		_, ok := (*ev.Content.AsReceipt())[hello][event.ReceiptTypeRead][mallory]
		return ok
	})

	// Bad presence first (a state that does not exist, a user of
	// another server): none of it reaches the appservice.
	peer.sendEDUs(edu("m.presence", map[string]any{"push": []any{map[string]any{"user_id": mallory, "presence": "dancing"}}}),
		edu("m.presence", map[string]any{"push": []any{map[string]any{"user_id": alice.UserID, "presence": "offline"}}}),
		edu("m.presence", map[string]any{"push": []any{map[string]any{"user_id": mallory, "presence": "online",
			"status_msg": "on the other server", "last_active_ago": 5, "currently_active": true}}}))
	pres := b.waitEvent(t, "mallory's presence", func(ev *event.Event) bool { return ev.Type == event.EphemeralEventPresence })
	if p := pres.Content.AsPresence(); pres.Sender != mallory || p.Presence != event.PresenceOnline || p.StatusMessage != "on the other server" {
		t.Fatalf("the first presence at the appservice: %s %+v", pres.Sender, p)
	}

	// A local user's presence takes the same way.
	_, err = alice.MakeRequest(ctx(t), http.MethodPut, alice.BuildClientURL("v3", "presence", alice.UserID, "status"),
		map[string]any{"presence": "unavailable", "status_msg": "away"}, nil)
	noErr(t, err, "alice sets her presence")
	b.waitEvent(t, "alice's presence", func(ev *event.Event) bool {
		p := ev.Content.AsPresence()
		return ev.Type == event.EphemeralEventPresence && ev.Sender == alice.UserID && p.Presence == event.PresenceUnavailable &&
			p.StatusMessage == "away"
	})
}

// TestAppserviceRemoteToDevice: a to-device message a user of another
// server (the gomatrixserverlib test peer) sends to a ghost's device, or
// to all its devices with "*", reaches the appservice in a transaction
// (MSC4203), as a local sender's does; an EDU whose sender is not of the
// origin never does.
func TestAppserviceRemoteToDevice(t *testing.T) {
	t.Parallel()
	peer, hs1 := startWithPeer(t, false)
	alice := hs1.Register("alice")
	b := newTestBridge(t, hs1, "bridge")
	b.add(t, hs1)
	b.pingUntilUp(t)

	ghost := b.as.Intent(id.NewUserID("bridge_anna", hs1.ServerName()))
	noErr(t, ghost.EnsureRegistered(ctx(t)), "register the ghost")
	ghostDev := b.as.NewMautrixClient(ghost.UserID)
	noErr(t, ghostDev.CreateDeviceMSC4190(ctx(t), "", "Bridge device"), "the ghost's device")
	room := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Invite: []id.UserID{ghost.UserID}})
	_, err := ghost.JoinRoomByID(ctx(t), room)
	noErr(t, err, "the ghost joins")
	peer.join("mallory", room.String())
	mallory := id.UserID(peer.mallory())

	toDevice := func(sender id.UserID, typ, msgID, device string) gomatrixserverlib.EDU {
		return edu("m.direct_to_device", map[string]any{"sender": sender, "type": typ, "message_id": msgID,
			"messages": map[string]any{ghost.UserID.String(): map[string]any{device: map[string]any{"n": msgID}}}})
	}
	next := func(what string) *event.Event {
		t.Helper()
		select {
		case ev := <-b.as.ToDeviceEvents:
			return ev
		case <-time.After(30 * time.Second):
			t.Fatalf("the appservice did not receive %s", what)
		}
		return nil
	}

	// The peer speaking for alice is dropped before anything reaches the
	// appservice; the EDUs of one /send apply in order, so the first
	// to-device message it gets is mallory's.
	peer.sendEDUs(toDevice(alice.UserID, "org.example.forged", "m1", ghostDev.DeviceID.String()),
		toDevice(mallory, "org.example.hello", "m2", ghostDev.DeviceID.String()))
	ev := next("mallory's to-device message")
	if ev.Sender != mallory || ev.Type.Type != "org.example.hello" || ev.ToUserID != ghost.UserID ||
		ev.ToDeviceID != ghostDev.DeviceID || ev.Content.Raw["n"] != "m2" {
		t.Fatalf("the first to-device message at the appservice: %+v", ev)
	}

	// "*" is every device the ghost has.
	peer.sendEDUs(toDevice(mallory, "org.example.all", "m3", "*"))
	ev = next("mallory's message to all the ghost's devices")
	if ev.Sender != mallory || ev.Type.Type != "org.example.all" || ev.ToDeviceID != ghostDev.DeviceID {
		t.Fatalf("the message to \"*\" at the appservice: %+v", ev)
	}
}
