//go:build goolm

package e2e

import (
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// TestAppserviceEncryptedBridgeRemote: the encrypted bridge of
// TestAppserviceEncryptedBridge with the human on a second server. The
// ghost's Olm machine runs in appservice mode on hs1.test; bob on
// hs2.test, with mautrix crypto, joins the ghost's encrypted room over
// federation. bob's room key reaches the ghost's device as an
// m.direct_to_device EDU from hs2, which hs1 hands to the appservice in a
// transaction (MSC4203), so the bridge decrypts his message; the ghost's
// room key goes the other way and bob decrypts its reply.
func TestAppserviceEncryptedBridgeRemote(t *testing.T) {
	t.Parallel()
	net := startFedNet(t, "hs1.test", "hs2.test")
	hs1, hs2 := net.Daemons["hs1.test"], net.Daemons["hs2.test"]
	b := newTestBridge(t, hs1, "ebr")
	b.reg.MSC3202 = true
	noErr(t, b.reg.Save(b.file), "save registration")
	b.add(t, hs1)
	b.pingUntilUp(t)

	ghost := id.UserID("@ebr_ghost:hs1.test")
	intent := b.as.Intent(ghost)
	noErr(t, intent.EnsureRegistered(ctx(t)), "register the ghost")
	gc := b.as.NewMautrixClient(ghost)
	noErr(t, gc.CreateDeviceMSC4190(ctx(t), "GHOSTDEV", "bridge device"), "make the ghost's device")
	roomID := must(intent.CreateRoom(ctx(t), &mautrix.ReqCreateRoom{Preset: "public_chat",
		InitialState: []*event.Event{{Type: event.StateEncryption, Content: event.Content{
			Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}}}},
	})).get(t).RoomID
	state := &roomState{room: roomID}
	mach, got := startGhostMachine(t, b, gc, state)

	// bob on hs2 joins the ghost's room over federation.
	bc := hs2.Register("bob")
	_, err := bc.JoinRoom(ctx(t), roomID.String(), &mautrix.ReqJoinRoom{Via: []string{"hs1.test"}})
	noErr(t, err, "bob@hs2 joins the ghost's room")
	waitUntil(t, "bob in the ghost's device lists after his join", func() bool { return got.sawChanged(bc.UserID) })
	members := []id.UserID{bc.UserID, ghost}

	// bob's message: his client on hs2 claims a one-time key of the
	// ghost's device through hs1 and sends the room key over Olm, an
	// m.direct_to_device EDU from hs2 that hs1 passes to the bridge.
	bob := newCryptoUser(t, bc, state)
	bob.send(t, roomID, members, "hello bridge, from afar")
	select {
	case body := <-got.decrypted:
		if body != "hello bridge, from afar" {
			t.Fatalf("the bridge decrypted %q", body)
		}
	case <-time.After(waitDeadline):
		t.Fatal("the bridge never decrypted bob's message")
	}

	// The ghost's reply: the bridge queries and claims bob's keys
	// through hs1, which asks hs2, and its room key goes to hs2.
	noErr(t, mach.ShareGroupSession(ctx(t), roomID, members), "share the ghost's room key")
	content, err := mach.EncryptMegolmEvent(ctx(t), roomID, event.EventMessage,
		&event.MessageEventContent{MsgType: event.MsgText, Body: "hello human, across servers"})
	noErr(t, err, "encrypt as the ghost")
	reply := must(gc.SendMessageEvent(ctx(t), roomID, event.EventEncrypted, content)).get(t).EventID
	if body := bob.receive(t, roomID, reply); body != "hello human, across servers" {
		t.Fatalf("bob decrypted %q", body)
	}
}
