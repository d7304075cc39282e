//go:build goolm

package e2e

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// bridgeCrypto is what an encrypted bridge's appservice side learns
// through its transactions: the OTK counts and device lists mautrix's
// event processor hands on, and the room messages its Olm machine
// decrypted.
type bridgeCrypto struct {
	mu        sync.Mutex
	otks      []mautrix.OTKCount
	lists     []mautrix.DeviceLists
	decrypted chan string
}

func (b *bridgeCrypto) sawOTK(user id.UserID, dev id.DeviceID, ok func(n int) bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.ContainsFunc(b.otks, func(c mautrix.OTKCount) bool {
		return c.UserID == user && c.DeviceID == dev && ok(c.SignedCurve25519)
	})
}

func (b *bridgeCrypto) sawChanged(user id.UserID) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.ContainsFunc(b.lists, func(l mautrix.DeviceLists) bool { return slices.Contains(l.Changed, user) })
}

// waitUntil polls cond (what the appservice got) until it holds, for at
// most waitDeadline.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startGhostMachine runs mautrix's Olm machine in appservice mode for the
// ghost's device gc acts as: its to-device events, one-time key counts
// and device lists come from the appservice's transactions, the room
// messages it decrypts go to the returned bridgeCrypto. It uploads the
// device's keys and waits for their count in a transaction.
func startGhostMachine(t *testing.T, b *testBridge, gc *mautrix.Client, state *roomState) (*crypto.OlmMachine, *bridgeCrypto) {
	t.Helper()
	got := &bridgeCrypto{decrypted: make(chan string, 10)}
	ep := appservice.NewEventProcessor(b.as)
	mach := crypto.NewOlmMachine(gc, nil, crypto.NewMemoryStore(nil), state)
	noErr(t, mach.Load(ctx(t)), "load the ghost's Olm machine")
	// What mach.AddAppserviceListener registers, with a look at the
	// counts and lists on the way: handlers run concurrently and mach's
	// device-list handler filters the list it is given in place, so each
	// side gets its own copy.
	for _, typ := range []event.Type{event.ToDeviceEncrypted, event.ToDeviceRoomKeyRequest, event.ToDeviceRoomKeyWithheld} {
		ep.On(typ, mach.HandleToDeviceEvent)
	}
	ep.OnOTK(func(ctx context.Context, c *mautrix.OTKCount) {
		got.mu.Lock()
		got.otks = append(got.otks, *c)
		got.mu.Unlock()
		mach.HandleOTKCounts(ctx, c)
	})
	ep.OnDeviceList(func(ctx context.Context, l *mautrix.DeviceLists, since string) {
		got.mu.Lock()
		got.lists = append(got.lists, mautrix.DeviceLists{Changed: slices.Clone(l.Changed), Left: slices.Clone(l.Left)})
		got.mu.Unlock()
		mach.HandleDeviceLists(ctx, &mautrix.DeviceLists{Changed: slices.Clone(l.Changed), Left: slices.Clone(l.Left)}, since)
	})
	ep.On(event.EventEncrypted, func(ctx context.Context, evt *event.Event) {
		content := evt.Content.AsEncrypted()
		if !mach.WaitForSession(ctx, evt.RoomID, content.SenderKey, content.SessionID, waitDeadline) {
			got.decrypted <- "no room key for " + evt.ID.String()
			return
		}
		dec, err := mach.DecryptMegolmEvent(ctx, evt)
		if err != nil {
			got.decrypted <- "decrypt " + evt.ID.String() + ": " + err.Error()
			return
		}
		got.decrypted <- dec.Content.AsMessage().Body
	})
	ep.Start(ctx(t))
	t.Cleanup(ep.Stop)
	noErr(t, mach.ShareKeys(ctx(t), -1), "upload the ghost device's keys")
	// The upload changed the ghost's device list: a transaction with no
	// event brings the new device's one-time key count.
	waitUntil(t, "the ghost device's one-time key count in a transaction", func() bool {
		return got.sawOTK(gc.UserID, gc.DeviceID, func(n int) bool { return n > 0 })
	})
	return mach, got
}

// TestAppserviceEncryptedBridge: a mautrix-go appservice registered with
// org.matrix.msc3202 runs mautrix's Olm machine in appservice mode for a
// ghost's device it made with MSC4190, acting as that device
// (device_id): it never syncs, so its one-time key counts, device lists
// and to-device messages come only in transactions. A human using mautrix
// crypto and the ghost share an encrypted room: the human's message is
// decrypted on the bridge side and the ghost's encrypted reply by the
// human. A device-list change with no event comes in a transaction of its
// own.
func TestAppserviceEncryptedBridge(t *testing.T) {
	d := StartDaemon(t)
	b := newTestBridge(t, d, "ebr")
	b.reg.MSC3202 = true
	noErr(t, b.reg.Save(b.file), "save registration")
	b.add(t, d)
	b.pingUntilUp(t)

	// The ghost and its device, made by the appservice.
	ghost := id.UserID("@ebr_ghost:" + serverName)
	noErr(t, b.as.Intent(ghost).EnsureRegistered(ctx(t)), "register the ghost")
	gc := b.as.NewMautrixClient(ghost)
	noErr(t, gc.CreateDeviceMSC4190(ctx(t), "GHOSTDEV", "bridge device"), "make the ghost's device")
	ac := d.Register("alice")
	roomID := must(ac.CreateRoom(ctx(t), &mautrix.ReqCreateRoom{
		Preset: "private_chat", Invite: []id.UserID{ghost},
		InitialState: []*event.Event{{Type: event.StateEncryption, Content: event.Content{
			Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}}}},
	})).get(t).RoomID
	state := &roomState{room: roomID}
	mach, got := startGhostMachine(t, b, gc, state)
	var uploaded int
	got.mu.Lock()
	uploaded = got.otks[len(got.otks)-1].SignedCurve25519
	got.mu.Unlock()

	must(b.as.Intent(ghost).JoinRoomByID(ctx(t), roomID)).get(t)
	// Joining a room where alice is makes her devices news to the ghost.
	waitUntil(t, "alice in the device lists after the ghost joined", func() bool { return got.sawChanged(ac.UserID) })

	// The human's message, decrypted by the bridge: her client claims one
	// of the ghost device's one-time keys and sends the room key over
	// Olm, which reaches the bridge as a to-device event in a
	// transaction.
	alice := newCryptoUser(t, ac, state)
	alice.send(t, roomID, []id.UserID{ac.UserID, ghost}, "hello bridge")
	select {
	case body := <-got.decrypted:
		if body != "hello bridge" {
			t.Fatalf("the bridge decrypted %q", body)
		}
	case <-time.After(waitDeadline):
		t.Fatal("the bridge never decrypted alice's message")
	}
	// The claim lowered the ghost device's count; the next transaction
	// said so.
	waitUntil(t, "the count after alice's claim", func() bool {
		return got.sawOTK(ghost, "GHOSTDEV", func(n int) bool { return n < uploaded })
	})

	// The ghost's encrypted reply, decrypted by the human: the bridge
	// queries and claims her keys and sends the room key as its device.
	noErr(t, mach.ShareGroupSession(ctx(t), roomID, []id.UserID{ac.UserID, ghost}), "share the ghost's room key")
	content, err := mach.EncryptMegolmEvent(ctx(t), roomID, event.EventMessage,
		&event.MessageEventContent{MsgType: event.MsgText, Body: "hello human"})
	noErr(t, err, "encrypt as the ghost")
	reply := must(gc.SendMessageEvent(ctx(t), roomID, event.EventEncrypted, content)).get(t).EventID
	if body := alice.receive(t, roomID, reply); body != "hello human" {
		t.Fatalf("alice decrypted %q", body)
	}

	// A new device of alice's, with no event anywhere: the change comes
	// in a transaction of its own.
	got.mu.Lock()
	got.lists = nil
	got.mu.Unlock()
	ac2 := d.Login("alice")
	mach2 := crypto.NewOlmMachine(ac2, nil, crypto.NewMemoryStore(nil), state)
	noErr(t, mach2.Load(ctx(t)), "load alice's second Olm machine")
	noErr(t, mach2.ShareKeys(ctx(t), -1), "upload keys of alice's second device")
	waitUntil(t, "alice's new device in the device lists", func() bool { return got.sawChanged(ac.UserID) })
}
