//go:build goolm

// The goolm tag: the caller is an E2EE client with mautrix's pure-Go Olm
// (see crypto_test.go).

package e2e

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/hearth-chat/hearth/calls/media"
	"github.com/hearth-chat/hearth/calls/media/mediatest"
)

// encryptedCall is a callCaller whose signalling is end-to-end encrypted,
// as Element's is in an encrypted room: every m.call.* event goes out as
// an m.room.encrypted event through the caller's Olm machine, and what
// the other party sends is read by decrypting the room's encrypted
// events.
type encryptedCall struct {
	*callCaller
	u       *cryptoUser
	members []id.UserID
}

// newEncryptedCall makes c an E2EE client (keys uploaded) calling in the
// encrypted room roomID, whose joined members are members. The caller's
// /sync is the Olm machine's from then on: to-device messages are taken
// by the first sync that sees them.
func newEncryptedCall(t *testing.T, c *mautrix.Client, roomID id.RoomID, members []id.UserID) *encryptedCall {
	t.Helper()
	cc := newCallCallerWith(t, c, roomID, true)
	u := newCryptoUser(t, c, &roomState{room: roomID})
	return &encryptedCall{callCaller: cc, u: u, members: members}
}

// send encrypts a call event of this call with the room's Megolm session,
// shared first with the members' devices.
func (ec *encryptedCall) send(typ string, fields map[string]any) {
	t := ec.t
	t.Helper()
	fields["call_id"], fields["party_id"], fields["version"] = ec.callID, ec.party, "1"
	noErr(t, ec.u.mach.ShareGroupSession(ctx(t), ec.roomID, ec.members), "share the room key")
	enc, err := ec.u.mach.EncryptMegolmEvent(ctx(t), ec.roomID, event.Type{Type: typ, Class: event.MessageEventType}, fields)
	noErr(t, err, "encrypt %s", typ)
	_, err = ec.u.client.SendMessageEvent(ctx(t), ec.roomID, event.EventEncrypted, enc)
	noErr(t, err, "send encrypted %s", typ)
}

func (ec *encryptedCall) invite() {
	ec.t.Helper()
	ec.send("m.call.invite", map[string]any{"lifetime": 60000,
		"offer": map[string]any{"type": "offer", "sdp": gatheredOffer(ec.t, ec.pc)}})
}

// await syncs until an event of another party decrypts to one of type typ
// (of this call, for a call event) and returns it decrypted. Every event
// of the room that is not encrypted fails the test if it is of type typ:
// in an encrypted room nothing the agent sends may go in the clear.
func (ec *encryptedCall) await(typ string) *event.Event {
	t := ec.t
	t.Helper()
	deadline := time.Now().Add(waitDeadline)
	for time.Now().Before(deadline) {
		for _, evt := range ec.u.timeline(t, ec.roomID, 2*time.Second) {
			if evt.Sender == ec.u.client.UserID {
				continue
			}
			if evt.Type.Type == typ {
				t.Fatalf("%s sent %s in the clear in an encrypted room: %s", evt.Sender, typ, evt.Content.VeryRaw)
			}
			dec := evt.decrypted
			if dec == nil || dec.Type.Type != typ {
				continue
			}
			if strings.HasPrefix(typ, "m.call.") && dec.Content.Raw["call_id"] != ec.callID {
				continue
			}
			return dec
		}
	}
	t.Fatalf("%s never received an encrypted %s", ec.u.client.UserID, typ)
	return nil
}

// takeAnswer waits for the encrypted answer, applies it and selects it.
func (ec *encryptedCall) takeAnswer() *event.Event {
	ec.t.Helper()
	ev := ec.await("m.call.answer")
	ans, _ := ev.Content.Raw["answer"].(map[string]any)
	sdp, _ := ans["sdp"].(string)
	noErr(ec.t, ec.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}), "set answer")
	ec.send("m.call.select_answer", map[string]any{"selected_party_id": ev.Content.Raw["party_id"]})
	return ev
}

// TestVoicemailCallEncrypted: in an encrypted DM (as Element creates
// them) alice calls the owner with encrypted signalling; none of the
// owner's devices answers, so the owner's "Hearth voicemail" device, an
// E2EE device with keys of its own, decrypts the invite and answers with
// an encrypted m.call.answer. Alice plays the tone and hangs up; the
// voice message arrives as an m.room.encrypted event that alice decrypts,
// its file is an encrypted attachment (file, not url) whose ciphertext
// alice downloads and decrypts, and the recording is the tone.
func TestVoicemailCallEncrypted(t *testing.T) {
	d := NewDaemon(t, t.TempDir())
	d.Extra = []string{"--voicemail-after", "2"}
	d.Start()
	m := ownerPassword.FindStringSubmatch(d.Logs())
	if m == nil {
		t.Fatalf("no owner password in the welcome text:\n%s", d.Logs())
	}
	owner, vmDevice := voicemailDevice(t, d, m[1])
	// The voicemail device published its keys as any E2EE client does.
	keys := must(owner.QueryKeys(ctx(t), &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{owner.UserID: {}}})).get(t)
	if dk, ok := keys.DeviceKeys[owner.UserID][vmDevice]; !ok || len(dk.Keys) == 0 {
		t.Fatalf("no device keys for the voicemail device %s: %+v", vmDevice, keys.DeviceKeys)
	}

	alice := d.Register("alice")
	noErr(t, alice.SetDisplayName(ctx(t), "Anna"), "display name")
	roomID := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "trusted_private_chat", IsDirect: true,
		Invite: []id.UserID{owner.UserID},
		InitialState: []*event.Event{{Type: event.StateEncryption, Content: event.Content{
			Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}}}}})
	Join(t, owner, roomID)
	ec := newEncryptedCall(t, alice, roomID, []id.UserID{alice.UserID, owner.UserID})
	ec.invite()
	ans := ec.takeAnswer()
	if ans.Sender != owner.UserID || ans.Content.Raw["party_id"] != string(vmDevice) {
		t.Fatalf("answer from %s party %v, want the owner's voicemail device %s", ans.Sender, ans.Content.Raw["party_id"], vmDevice)
	}
	waitFor(t, "media connected", func() (bool, bool) {
		return true, ec.pc.ConnectionState() == webrtc.PeerConnectionStateConnected
	})
	noErr(t, media.PlayOgg(ctx(t), ec.tone, bytes.NewReader(mediatest.Tone())), "play the tone")
	ec.send("m.call.hangup", map[string]any{"reason": "user_hangup"})

	msg := ec.await("m.room.message")
	if msg.Sender != owner.UserID {
		t.Fatalf("voice message from %s, want %s", msg.Sender, owner.UserID)
	}
	raw := msg.Content.Raw
	_, voice := raw["org.matrix.msc3245.voice"].(map[string]any)
	body, _ := raw["body"].(string)
	if raw["msgtype"] != "m.audio" || !voice || !strings.HasPrefix(body, "Voicemail from Anna (0:0") || raw["url"] != nil {
		t.Fatalf("voice message content: %v", raw)
	}
	content := msg.Content.AsMessage()
	if content.File == nil || content.File.URL == "" {
		t.Fatalf("the voice message has no encrypted file: %v", raw)
	}
	mxc := string(content.File.URL)
	status, cipher := Raw(t, alice, "GET", "/_matrix/client/v1/media/download/"+strings.TrimPrefix(mxc, "mxc://"), nil)
	if status != 200 {
		t.Fatalf("download %s: %d %s", mxc, status, cipher)
	}
	if _, err := mediatest.CheckTone(cipher, mediatest.ToneDuration, 500*time.Millisecond); err == nil {
		t.Fatal("the stored file is the recording in the clear")
	}
	file, err := decryptCopy(content.File, cipher)
	noErr(t, err, "decrypt the voicemail file")
	rep, err := mediatest.CheckTone(file, mediatest.ToneDuration, 500*time.Millisecond)
	if err != nil {
		t.Fatalf("the voicemail is not the tone: %v (%+v)", err, rep)
	}
}

// TestEchoCallEncrypted: alice, an E2EE client, invites @echo to an
// encrypted room; echo's device, an E2EE device of its own, says hello
// encrypted, decrypts alice's encrypted call, answers encrypted and
// sends her tone back.
func TestEchoCallEncrypted(t *testing.T) {
	d := StartDaemon(t)
	callEchoEncrypted(t, d.Register("alice"), d.UserID("echo"))
}

// TestEchoCallEncryptedOverFederation: the same with alice on another
// server, so her client fetches the echo device's keys and claims its
// one-time keys over federation, and echo's device hers.
func TestEchoCallEncryptedOverFederation(t *testing.T) {
	t.Parallel()
	net := startFedNet(t, "hs1.test", "hs2.test")
	hs1, hs2 := net.Daemons["hs1.test"], net.Daemons["hs2.test"]
	callEchoEncrypted(t, hs1.Register("alice"), hs2.UserID("echo"))
}

// callEchoEncrypted makes alice an E2EE client, invites echo to a new
// encrypted room, waits for its encrypted hello and calls it with
// encrypted signalling; the tone must come back.
func callEchoEncrypted(t *testing.T, alice *mautrix.Client, echo id.UserID) {
	t.Helper()
	roomID := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat",
		InitialState: []*event.Event{{Type: event.StateEncryption, Content: event.Content{
			Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}}}}})
	ec := newEncryptedCall(t, alice, roomID, []id.UserID{alice.UserID, echo})
	must(alice.InviteUser(ctx(t), roomID, &mautrix.ReqInviteUser{UserID: echo})).get(t)
	hello := ec.await("m.room.message")
	if hello.Sender != echo || hello.Content.Raw["msgtype"] != "m.notice" {
		t.Fatalf("echo's hello: %s %v", hello.Sender, hello.Content.Raw)
	}

	ec.invite()
	ans := ec.takeAnswer()
	if ans.Sender != echo {
		t.Fatalf("answer from %s, want %s", ans.Sender, echo)
	}
	ec.toneComesBack()
	ec.send("m.call.hangup", map[string]any{"reason": "user_hangup"})
}

// voicemailDevice logs in as the owner and returns the client and the ID
// of the owner's device named "Hearth voicemail" (failing if there is not
// exactly one).
func voicemailDevice(t *testing.T, d *Daemon, password string) (*mautrix.Client, id.DeviceID) {
	t.Helper()
	owner := d.Client("", "")
	_, err := owner.Login(ctx(t), &mautrix.ReqLogin{Type: mautrix.AuthTypePassword,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: "root"}, Password: password, StoreCredentials: true})
	noErr(t, err, "owner login")
	var found []id.DeviceID
	for _, dev := range must(owner.GetDevicesInfo(ctx(t))).get(t).Devices {
		if dev.DisplayName == "Hearth voicemail" {
			found = append(found, dev.DeviceID)
		}
	}
	if len(found) != 1 {
		t.Fatalf("the owner has %d Hearth voicemail devices, want 1: %v", len(found), found)
	}
	return owner, found[0]
}

// TestVoicemailDeviceEachStart: the voicemail device's keys live in the
// daemon's memory, so each start replaces the device: after a restart
// the owner has one "Hearth voicemail" device, with a new ID and
// published keys, and the old device and its keys are gone (clients then
// never encrypt for a device nobody holds the keys of).
func TestVoicemailDeviceEachStart(t *testing.T) {
	d := NewDaemon(t, t.TempDir())
	d.Start()
	m := ownerPassword.FindStringSubmatch(d.Logs())
	if m == nil {
		t.Fatalf("no owner password in the welcome text:\n%s", d.Logs())
	}
	owner, before := voicemailDevice(t, d, m[1])
	d.Restart()
	_, after := voicemailDevice(t, d, m[1])
	if after == before {
		t.Fatalf("the voicemail device is still %s after a restart", before)
	}
	keys := must(owner.QueryKeys(ctx(t), &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{owner.UserID: {}}})).get(t)
	mine := keys.DeviceKeys[owner.UserID]
	if _, ok := mine[before]; ok {
		t.Fatalf("the old voicemail device %s still has keys", before)
	}
	if dk, ok := mine[after]; !ok || len(dk.Keys) == 0 {
		t.Fatalf("no keys for the new voicemail device %s: %+v", after, mine)
	}
}
