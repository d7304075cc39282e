package room

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/hearth-chat/hearth/internal/store"
)

func newEngine(t testing.TB) (*Engine, *store.DB) {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(nil)
	st, err := Open(Options{Path: filepath.Join(t.TempDir(), "h.db"),
		Engine: Config{ServerName: "test.local", KeyID: "ed25519:t", PrivateKey: key}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.DB.Close() })
	return st.Engine, st.DB
}

const alice, bob = "@alice:test.local", "@bob:test.local"

func TestEveryRoomVersion(t *testing.T) {
	ctx := context.Background()
	for _, v := range SupportedVersions() {
		t.Run(string(v), func(t *testing.T) {
			e, _ := newEngine(t)
			name := "room " + string(v)
			roomID, err := e.CreateRoom(ctx, alice, Profile{DisplayName: "Alice"}, CreateRequest{
				RoomVersion: string(v), Name: &name, Invite: []string{bob}, Preset: "private_chat"})
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			if _, err := e.ChangeMembership(ctx, MembershipRequest{Sender: bob, RoomID: roomID, Target: bob, Membership: "join"}); err != nil {
				t.Fatalf("join: %v", err)
			}
			msg, err := e.Send(ctx, SendRequest{Sender: bob, Device: "D", RoomID: roomID, Type: "m.room.message",
				Content: json.RawMessage(`{"msgtype":"m.text","body":"hi"}`), TxnID: "1"})
			if err != nil {
				t.Fatalf("send: %v", err)
			}
			// Alice (PL 100, or creator in v12) may redact bob's message.
			if _, err := e.Send(ctx, SendRequest{Sender: alice, RoomID: roomID, Type: "m.room.redaction",
				Content: json.RawMessage(`{}`), Redacts: msg, TxnID: "r"}); err != nil {
				t.Fatalf("redact: %v", err)
			}
			ev, err := e.Event(bob, roomID, msg)
			if err != nil {
				t.Fatal(err)
			}
			if string(ev.Content) != "{}" || ev.Unsigned["redacted_because"] == nil {
				t.Fatalf("not redacted: %s %v", ev.Content, ev.Unsigned)
			}
			st, err := e.StateEvent(bob, roomID, "m.room.name", "")
			if err != nil || string(st.Content) != fmt.Sprintf(`{"name":%q}`, name) {
				t.Fatalf("name state: %v %s", err, st.Content)
			}
		})
	}
}

func TestBobCannotRedactAlice(t *testing.T) {
	ctx := context.Background()
	e, _ := newEngine(t)
	roomID, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	e.ChangeMembership(ctx, MembershipRequest{Sender: bob, RoomID: roomID, Target: bob, Membership: "join"})
	msg, _ := e.Send(ctx, SendRequest{Sender: alice, RoomID: roomID, Type: "m.room.message", Content: json.RawMessage(`{"body":"x"}`)})
	if _, err := e.Send(ctx, SendRequest{Sender: bob, RoomID: roomID, Type: "m.room.redaction", Redacts: msg}); err == nil {
		t.Fatal("bob redacted alice's message without power")
	}
	ev, _ := e.Event(bob, roomID, msg)
	if string(ev.Content) == "{}" {
		t.Fatal("refused redaction changed the stored event")
	}
}

func TestStateAtPastPositions(t *testing.T) {
	ctx := context.Background()
	e, db := newEngine(t)
	roomID, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	topics := map[uint64]string{}
	for i := range 40 {
		topic := fmt.Sprintf("topic %d", i)
		sk := ""
		if _, err := e.Send(ctx, SendRequest{Sender: alice, RoomID: roomID, Type: "m.room.topic", StateKey: &sk,
			Content: json.RawMessage(fmt.Sprintf(`{"topic":%q}`, topic))}); err != nil {
			t.Fatal(err)
		}
		pos, _ := e.Pos()
		topics[pos] = topic
	}
	// Every historical position resolves, through delta chains and full
	// snapshots, to the topic set at that position.
	db.View(func(tx *store.Tx) error {
		info, err := roomInfo(tx, roomID)
		if err != nil {
			t.Fatal(err)
		}
		for pos, want := range topics {
			nids, err := e.stateNIDsAt(tx, info, pos)
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			for _, nid := range nids {
				ev, _ := e.loadEvent(tx, nid)
				if ev.PDU.Type() == "m.room.topic" {
					var c struct{ Topic string }
					json.Unmarshal(ev.PDU.Content(), &c)
					got = c.Topic
				}
			}
			if got != want {
				t.Errorf("state at %d: topic %q, want %q", pos, got, want)
			}
		}
		return nil
	})
}

func TestEventRecordRoundTrip(t *testing.T) {
	in := &Event{NID: 7, RoomNID: 3, Version: "10", ID: "$abc", Flags: flagRedacted, StateBefore: 9, RedactedBy: 11,
		Replaces: 5, TxnDevice: "DEV", TxnID: "txn/1", JSON: []byte(`{"a":1}`)}
	out, err := decodeEvent(7, in.encode())
	if err != nil {
		t.Fatal(err)
	}
	out.PDU = nil
	if fmt.Sprint(*in) != fmt.Sprint(*out) {
		t.Fatalf("round trip:\n%v\n%v", *in, *out)
	}
	for i := range len(in.encode()) - len(in.JSON) {
		if _, err := decodeEvent(7, in.encode()[:i]); err == nil {
			t.Fatalf("truncated record of %d bytes decoded", i)
		}
	}
}

// Concurrent sends into one room, built optimistically outside the write
// transaction, still form a single chain: each event's only prev_event is
// the event before it, and depths count up by one.
func TestConcurrentSendsFormOneChain(t *testing.T) {
	ctx := context.Background()
	e, db := newEngine(t)
	roomID, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				if _, err := e.Send(ctx, SendRequest{Sender: alice, Device: fmt.Sprint("D", g), RoomID: roomID,
					Type: "m.room.message", Content: json.RawMessage(`{"body":"x"}`), TxnID: fmt.Sprint(i)}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	db.View(func(tx *store.Tx) error {
		info, _ := roomInfo(tx, roomID)
		var prevID string
		var prevDepth int64
		n := 0
		scanTimeline(tx, info.NID, 0, Forward, func(_, nid uint64) (bool, error) {
			ev, err := e.loadEvent(tx, nid)
			if err != nil {
				t.Fatal(err)
			}
			if prevID != "" {
				if p := ev.PDU.PrevEventIDs(); len(p) != 1 || p[0] != prevID || ev.PDU.Depth() != prevDepth+1 {
					t.Fatalf("event %d: prev %v depth %d, want [%s] %d", nid, p, ev.PDU.Depth(), prevID, prevDepth+1)
				}
			}
			prevID, prevDepth = ev.ID, ev.PDU.Depth()
			n++
			return true, nil
		})
		if n < 16*20 {
			t.Fatalf("%d events in the timeline", n)
		}
		return nil
	})
}
