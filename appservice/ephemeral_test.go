package appservice

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/internal/room"
)

// ephemeralSeen is every ephemeral event type the appservice got, in
// order, counting a retried transaction ID once.
func (a *asServer) ephemeralSeen() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	done := map[string]bool{}
	for _, t := range a.seen {
		if t.Mode == "ok" && !done[t.ID] {
			done[t.ID] = true
			out = append(out, t.Ephemeral...)
		}
	}
	return strings.Join(out, "|")
}

// TestQueueEphemeralFromEngine: typing changes (a start, and the stop its
// timeout makes) and public read receipts reach the appservice from the
// room engine, whoever made them (room.Engine.OnEphemeral: the client API
// and federation both go through it); presence of a user sharing a room
// with the ghost goes too, the ghost's own does not. While the
// appservice fails, the presence-carrying transaction is retried with
// back-off under the same ID, and people's sends return meanwhile.
func TestQueueEphemeralFromEngine(t *testing.T) {
	w := setupQueueWorld(t, nil)
	w.rooms.OnEphemeral(w.q.Ephemeral)
	w.settle(t)
	if err := w.rooms.SetTyping(alice, w.roomID, true, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	w.as.waitFor(t, "typing start and its timeout", func() bool { return w.as.ephemeralSeen() == "m.typing|m.typing" })
	w.as.mu.Lock()
	w.as.seen = nil
	w.as.mu.Unlock()

	last, err := w.rooms.Send(context.Background(), room.SendRequest{Sender: alice, Device: "D", RoomID: w.roomID,
		Type: "m.room.message", Content: json.RawMessage(`{"msgtype":"m.text","body":"read me"}`), TxnID: "r"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.rooms.SetReceipt(context.Background(), alice, w.roomID, "m.read.private", last, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := w.rooms.SetReceipt(context.Background(), alice, w.roomID, "m.read", last, ""); err != nil {
		t.Fatal(err)
	}
	w.as.waitFor(t, "the public receipt", func() bool { return w.as.ephemeralSeen() == "m.receipt" })

	w.as.setMode("fail")
	w.q.Presence(context.Background(), "@br_ghost:"+qServer, map[string]any{"presence": "online"})  // its own: not sent
	w.q.Presence(context.Background(), "@bob:elsewhere.test", map[string]any{"presence": "online"}) // shares no room: not sent
	w.q.Presence(context.Background(), alice, map[string]any{"presence": "unavailable"})
	w.as.waitFor(t, "the presence tried twice", func() bool { return len(w.as.failedIDs()) >= 2 })
	w.say(t, "meanwhile") // returns although the appservice fails
	w.as.setMode("ok")
	w.as.waitFor(t, "presence then the message", func() bool { return strings.HasSuffix(texts(w.as.delivered()), "meanwhile") })
	ids := w.as.failedIDs()
	for _, id := range ids[1:] {
		if id != ids[0] {
			t.Fatalf("retries under other IDs: %v", ids)
		}
	}
	if got := w.as.ephemeralSeen(); got != "m.receipt|m.presence" {
		t.Fatalf("ephemeral events acknowledged: %q", got)
	}
}

// TestQueuePresenceOneWrite: the presence updates of one federation EDU
// (PresenceMany) are queued in one write, not one per user — each is a
// commit that federation's /send waits for — and all of them arrive.
func TestQueuePresenceOneWrite(t *testing.T) {
	var writes atomic.Int64
	w := setupQueueWorld(t, func(q *Queue) { q.onQueueWrite = func([]string) { writes.Add(1) } })
	ctx := context.Background()
	var users []string
	for i := range 3 {
		u := fmt.Sprintf("@u%d:%s", i, qServer)
		users = append(users, u)
		if _, err := w.rooms.ChangeMembership(ctx, room.MembershipRequest{Sender: alice, RoomID: w.roomID, Target: u, Membership: "invite"}); err != nil {
			t.Fatal(err)
		}
		if _, err := w.rooms.ChangeMembership(ctx, room.MembershipRequest{Sender: u, RoomID: w.roomID, Target: u, Membership: "join"}); err != nil {
			t.Fatal(err)
		}
	}
	w.settle(t)
	writes.Store(0)
	updates := map[string]map[string]any{alice: {"presence": "online"}, "@br_ghost:" + qServer: {"presence": "online"}}
	for _, u := range users {
		updates[u] = map[string]any{"presence": "unavailable"}
	}
	w.q.PresenceMany(ctx, updates)
	if n := writes.Load(); n != 1 {
		t.Fatalf("%d queue writes for one EDU of %d users, want 1", n, len(updates))
	}
	// Everyone's but the ghost's own.
	w.as.waitFor(t, "the presence delivered", func() bool { return strings.Count(w.as.ephemeralSeen(), "m.presence") >= 4 })
	if got := w.as.ephemeralSeen(); got != "m.presence|m.presence|m.presence|m.presence" {
		t.Fatalf("ephemeral events acknowledged: %q", got)
	}
}
