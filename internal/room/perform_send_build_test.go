package room

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/internal/store"
)

// TestBuildMessageSameAsGomatrixserverlib holds the direct build path
// (perform_send_build.go) to gomatrixserverlib: for every room version it knows,
// the event built directly must be byte for byte the one EventBuilder.Build
// makes from the same builder at the same time, and gomatrixserverlib must
// accept it as an untrusted event (content hash), verify its signature over
// the redacted form and derive the same event ID.
func TestBuildMessageSameAsGomatrixserverlib(t *testing.T) {
	pub, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	const origin, keyID = spec.ServerName("test.local"), gomatrixserverlib.KeyID("ed25519:t")
	now := time.UnixMilli(1765000000123)
	contents := []string{
		`{"msgtype":"m.text","body":"hello"}`,
		` { "z" : [3, {"b":1, "a":"\u00e9\u2028<>&\/\n\"\\"}], "a": null, "m": {"y":true,"x":false} } `,
		`{"body":"big","n":9007199254740991,"neg":-9007199254740991,"e":"😀"}`,
		`{"float":1.5}`, // a float: refused from room v6 on, both ways
		`{}`,
	}
	types := []string{"m.room.message", "m.reaction", "com.example.é\"type", "m.room.encrypted"}
	var fast int
	for v, ver := range gomatrixserverlib.RoomVersions() {
		for ti, typ := range types {
			for ci, content := range contents {
				roomID := "!room:test.local"
				if ver.DomainlessRoomIDs() {
					roomID = "!AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcde"
				}
				proto := gomatrixserverlib.ProtoEvent{
					SenderID: "@alice:test.local", RoomID: roomID, Type: typ,
					PrevEvents: []string{"$prev" + strconv.Itoa(ci)},
					AuthEvents: []string{"$create", "$power", "$member" + strconv.Itoa(ti)},
					Depth:      int64(7 + ci), Content: spec.RawJSON(content),
				}
				want, wantErr := ver.NewEventBuilderFromProtoEvent(&proto).Build(now, origin, keyID, key)
				got, ok, gotErr := buildMessage(ver, ver.NewEventBuilderFromProtoEvent(&proto), now, origin, keyID, key)
				if !ok {
					if ver.EventFormat() == gomatrixserverlib.EventFormatV2 && !ver.StateDAGs() {
						t.Errorf("%s: %s was not built directly", v, typ)
					}
					continue
				}
				fast++
				if (wantErr != nil) != (gotErr != nil) {
					t.Errorf("%s %s %s: Build error %v, direct error %v", v, typ, content, wantErr, gotErr)
					continue
				}
				if wantErr != nil {
					continue
				}
				if !bytes.Equal(got.JSON(), want.JSON()) {
					t.Errorf("%s %s: JSON differs\n got %s\nwant %s", v, typ, got.JSON(), want.JSON())
				}
				if got.EventID() != want.EventID() {
					t.Errorf("%s %s: event ID %s, Build's %s", v, typ, got.EventID(), want.EventID())
				}
				checkSignedEvent(t, ver, got, origin, keyID, pub)
			}
		}
		// Types whose content redaction keeps, and state events, go
		// through Build.
		for _, typ := range []string{"m.room.member", "m.room.power_levels", "m.room.redaction", "m.room.create"} {
			proto := gomatrixserverlib.ProtoEvent{SenderID: "@alice:test.local", RoomID: "!room:test.local", Type: typ, Depth: 2, Content: spec.RawJSON(`{}`)}
			if _, ok, _ := buildMessage(ver, ver.NewEventBuilderFromProtoEvent(&proto), now, origin, keyID, key); ok {
				t.Errorf("%s: %s was built directly", v, typ)
			}
		}
		sk := ""
		proto := gomatrixserverlib.ProtoEvent{SenderID: "@alice:test.local", RoomID: "!room:test.local", Type: "m.room.topic", StateKey: &sk, Depth: 2, Content: spec.RawJSON(`{}`)}
		if _, ok, _ := buildMessage(ver, ver.NewEventBuilderFromProtoEvent(&proto), now, origin, keyID, key); ok {
			t.Errorf("%s: a state event was built directly", v)
		}
	}
	if fast == 0 {
		t.Fatal("no event was built directly")
	}
	// An origin_server_ts outside canonical JSON's integers (an
	// appservice's ts): the same outcome as Build, which refuses it from
	// room v6 on — a remote server would reject the event.
	for _, ms := range []int64{maxSafeInt + 1, 1<<63 - 1, -1} {
		for v, ver := range gomatrixserverlib.RoomVersions() {
			proto := gomatrixserverlib.ProtoEvent{SenderID: "@alice:test.local", RoomID: "!AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcde",
				Type: "m.room.message", PrevEvents: []string{"$prev"}, AuthEvents: []string{"$create"}, Depth: 3, Content: spec.RawJSON(`{}`)}
			_, wantErr := ver.NewEventBuilderFromProtoEvent(&proto).Build(time.UnixMilli(ms), origin, keyID, key)
			_, ok, gotErr := buildMessage(ver, ver.NewEventBuilderFromProtoEvent(&proto), time.UnixMilli(ms), origin, keyID, key)
			if ok && (gotErr != nil) != (wantErr != nil) {
				t.Errorf("%s ts %d: Build error %v, direct error %v", v, ms, wantErr, gotErr)
			}
		}
	}
}

// checkSignedEvent has gomatrixserverlib check what a remote server
// checks: the content hash (an event failing it comes back redacted), the
// event ID as the reference hash, and the origin's signature.
func checkSignedEvent(t *testing.T, ver gomatrixserverlib.IRoomVersion, pdu gomatrixserverlib.PDU,
	origin spec.ServerName, keyID gomatrixserverlib.KeyID, pub ed25519.PublicKey) {
	t.Helper()
	parsed, err := ver.NewEventFromUntrustedJSON(pdu.JSON())
	if err != nil {
		t.Errorf("%s: untrusted parse: %v", ver.Version(), err)
		return
	}
	if parsed.Redacted() {
		t.Errorf("%s: content hash does not match", ver.Version())
	}
	if parsed.EventID() != pdu.EventID() {
		t.Errorf("%s: reference hash gives %s, event says %s", ver.Version(), parsed.EventID(), pdu.EventID())
	}
	redacted, err := ver.RedactEventJSON(pdu.JSON())
	if err != nil {
		t.Fatal(err)
	}
	if err := gomatrixserverlib.VerifyJSON(string(origin), keyID, pub, redacted); err != nil {
		t.Errorf("%s: signature: %v", ver.Version(), err)
	}
}

// TestSentMessagesVerify sends messages through the engine in every
// supported room version and checks each stored event as a remote server
// would (hash, signature, event ID) and against the auth rules with the
// state before it.
func TestSentMessagesVerify(t *testing.T) {
	ctx := context.Background()
	for _, v := range SupportedVersions() {
		t.Run(string(v), func(t *testing.T) {
			e, db := newEngine(t)
			roomID, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{RoomVersion: string(v), Preset: "public_chat"})
			if err != nil {
				t.Fatal(err)
			}
			ver := gomatrixserverlib.MustGetRoomVersion(v)
			for i := range 3 {
				id, err := e.Send(ctx, SendRequest{Sender: alice, Device: "D", RoomID: roomID, Type: "m.room.message",
					Content: json.RawMessage(`{"msgtype":"m.text","body":"hi ` + strconv.Itoa(i) + `"}`), TxnID: strconv.Itoa(i)})
				if err != nil {
					t.Fatal(err)
				}
				err = db.View(func(tx *store.Tx) error {
					ev, err := e.loadEvent(tx, eventNID(tx, id))
					if err != nil {
						return err
					}
					checkSignedEvent(t, ver, ev.PDU, e.serverName, e.keyID, e.key.Public().(ed25519.PublicKey))
					checkAllowed(t, e, tx, ev)
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
