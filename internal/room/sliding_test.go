package room

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/hearth-chat/hearth/internal/stream"
)

// TestSlidingListBumpStamp: a room's bump stamp is the position of its
// newest event of a bumping type (a state event such as a topic does not
// bump), moves with a new message, and is the same when read by an engine
// with a cold cache (after a restart).
func TestSlidingListBumpStamp(t *testing.T) {
	ctx := context.Background()
	e, db := newEngine(t)
	a, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	send := func(roomID, typ, sk, content string) uint64 {
		t.Helper()
		req := SendRequest{Sender: alice, RoomID: roomID, Type: typ, Content: json.RawMessage(content), TxnID: typ + content}
		if sk != "-" {
			req.StateKey = &sk
		}
		if _, err := e.Send(ctx, req); err != nil {
			t.Fatal(err)
		}
		pos, _ := e.Pos()
		return pos
	}
	msgA := send(a, "m.room.message", "-", `{"msgtype":"m.text","body":"a"}`)
	msgB := send(b, "m.room.message", "-", `{"msgtype":"m.text","body":"b"}`)
	send(a, "m.room.topic", "", `{"topic":"not activity"}`)
	bumps := func(e *Engine) map[string]SlidingEntry {
		t.Helper()
		now, _ := e.Pos()
		list, err := e.SlidingList(alice, now, nil)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]SlidingEntry{}
		for _, en := range list {
			out[en.RoomID] = en
		}
		return out
	}
	got := bumps(e)
	if got[a].BumpStamp != msgA || got[b].BumpStamp != msgB || got[a].Membership != "join" || got[a].LastPos <= msgA {
		t.Fatalf("bumps = %+v, want a at %d, b at %d", got, msgA, msgB)
	}
	msgA2 := send(a, "m.room.message", "-", `{"msgtype":"m.text","body":"a2"}`)
	if got = bumps(e); got[a].BumpStamp != msgA2 {
		t.Fatalf("after a new message: %d, want %d", got[a].BumpStamp, msgA2)
	}
	_, key, _ := ed25519.GenerateKey(nil)
	pos, _ := e.Pos()
	cold := New(db, stream.New(pos), Config{ServerName: "test.local", KeyID: "ed25519:t", PrivateKey: key})
	if c := bumps(cold); c[a].BumpStamp != msgA2 || c[b].BumpStamp != msgB {
		t.Fatalf("cold cache: %+v", c)
	}
}

// BenchmarkSlidingListCold: the room list of an account in 1,000 rooms
// read by an engine that has just started (every bump stamp found by a
// timeline scan); the warm case reads only what changed.
func BenchmarkSlidingListCold(b *testing.B) {
	ctx := context.Background()
	e, db := newEngine(b)
	for i := 0; i < 1000; i++ {
		id, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.Send(ctx, SendRequest{Sender: alice, RoomID: id, Type: "m.room.message",
			Content: json.RawMessage(`{"msgtype":"m.text","body":"hi"}`), TxnID: fmt.Sprint(i)}); err != nil {
			b.Fatal(err)
		}
	}
	pos, _ := e.Pos()
	_, key, _ := ed25519.GenerateKey(nil)
	b.ResetTimer()
	for b.Loop() {
		cold := New(db, stream.New(pos), Config{ServerName: "test.local", KeyID: "ed25519:t", PrivateKey: key})
		if list, err := cold.SlidingList(alice, pos, nil); err != nil || len(list) != 1000 {
			b.Fatal(err, len(list))
		}
	}
}

// TestSlidingListBans: a user banned after joining sees the room (with the
// ban's position as its bump stamp); one banned without ever joining
// does not.
func TestSlidingListBans(t *testing.T) {
	ctx := context.Background()
	e, _ := newEngine(t)
	const carol = "@carol:test.local"
	roomID, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ChangeMembership(ctx, MembershipRequest{Sender: bob, RoomID: roomID, Target: bob, Membership: "join"}); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{bob, carol} {
		if _, err := e.ChangeMembership(ctx, MembershipRequest{Sender: alice, RoomID: roomID, Target: u, Membership: "ban"}); err != nil {
			t.Fatal(err)
		}
	}
	now, _ := e.Pos()
	for u, want := range map[string]int{bob: 1, carol: 0} {
		list, err := e.SlidingList(u, now, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != want || (want == 1 && (list[0].Membership != "ban" || list[0].BumpStamp != list[0].MemberPos)) {
			t.Errorf("%s: %+v, want %d rooms", u, list, want)
		}
	}
}
