package queue

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/tidwall/gjson"

	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/store"
)

const alice, bob = "@alice:test.local", "@bob:test.local"

// newRoom makes a room of two local users, through the real engine.
func newRoom(t *testing.T, e *room.Engine) string {
	t.Helper()
	ctx := context.Background()
	roomID, err := e.CreateRoom(ctx, alice, room.Profile{}, room.CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ChangeMembership(ctx, room.MembershipRequest{Sender: bob, RoomID: roomID, Target: bob, Membership: "join"}); err != nil {
		t.Fatal(err)
	}
	// A user of the remote server joins, as if over federation (the room
	// engine checks auth, not signatures): the room's next events go to
	// the remote server.
	sk := "@rem:" + remoteHS
	join, _, err := e.Template(&gomatrixserverlib.ProtoEvent{SenderID: sk, RoomID: roomID, Type: "m.room.member",
		StateKey: &sk, Content: []byte(`{"membership":"join"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Ingest(ctx, join, room.IngestOptions{}); err != nil {
		t.Fatal(err)
	}
	return roomID
}

// invite invites another user of the remote server, which is in the
// room: the engine lists the invite for that server, which is how these
// tests get real PDUs into the queue.
func invite(t *testing.T, e *room.Engine, roomID, user string) {
	t.Helper()
	if _, err := e.ChangeMembership(context.Background(), room.MembershipRequest{Sender: alice, RoomID: roomID,
		Target: user, Membership: "invite"}); err != nil {
		t.Fatal(err)
	}
}

func edu(i int) gomatrixserverlib.EDU {
	return gomatrixserverlib.EDU{Type: "org.example.test", Content: []byte(fmt.Sprintf(`{"n":%d}`, i))}
}

// 120 events queued while the remote is down survive closing and
// reopening the file, then go out as 50 + 50 + 20 in order, and no txn ID
// is used twice across the restart.
func TestRestartKeepsOrderAcrossBatches(t *testing.T) {
	r := newRemote(t)
	key := r.key()
	path := filepath.Join(t.TempDir(), "h.db")
	nd := openNode(t, path, key, r)
	roomID := newRoom(t, nd.engine)

	// The first run starts at the current position and stops; the room's
	// creation is never sent.
	q := New(nd.db, nd.engine, nd.n, nd.client, origin)
	q.Start()
	q.Stop()
	for i := range 120 {
		invite(t, nd.engine, roomID, fmt.Sprintf("@u%03d:%s", i, remoteHS))
	}
	r.setReply(func(got) int { return 503 })
	q = New(nd.db, nd.engine, nd.n, nd.client, origin)
	q.minBackoff = time.Hour
	q.Start()
	eventually(t, "a failed attempt with all 120 queued", func() bool {
		s := status(q, remoteHS)
		return s.Queued == 120 && s.Failures == 1
	})
	if s := status(q, remoteHS); !strings.Contains(s.LastError, "503") || s.NextTry.Before(time.Now().Add(30*time.Minute)) {
		t.Fatalf("status after failure: %+v", s)
	}
	q.Stop()
	nd.db.Close()

	r.setReply(nil)
	nd = openNode(t, path, key, r)
	t.Cleanup(func() { nd.db.Close() })
	q = nd.queue(t, nil)
	if s := status(q, remoteHS); s.Queued != 120 || s.Failures != 1 {
		t.Fatalf("after reopening: %+v", s)
	}
	q.WakeAll() // the stored backoff is honoured until something ends it
	eventually(t, "120 PDUs delivered", func() bool { _, acc := r.snapshot(); return pduCount(acc) >= 120 })

	attempts, acc := r.snapshot()
	if len(acc) != 3 || len(acc[0].Txn.PDUs) != 50 || len(acc[1].Txn.PDUs) != 50 || len(acc[2].Txn.PDUs) != 20 {
		t.Fatalf("transactions: %d", len(acc))
	}
	i := 0
	for _, g := range acc {
		if g.Dest != remoteHS || len(g.Txn.EDUs) != 0 {
			t.Fatalf("txn %s to %s with %d EDUs", g.ID, g.Dest, len(g.Txn.EDUs))
		}
		for _, p := range g.Txn.PDUs {
			if sk := gjson.GetBytes(p, "state_key").String(); sk != fmt.Sprintf("@u%03d:%s", i, remoteHS) {
				t.Fatalf("PDU %d is the invite of %s", i, sk)
			}
			i++
		}
	}
	ids := map[string]bool{}
	for _, g := range attempts {
		ids[g.ID] = true
	}
	if len(ids) != 4 || len(attempts) != 4 {
		t.Fatalf("%d attempts with %d distinct txn IDs, want 4 and 4", len(attempts), len(ids))
	}
	eventually(t, "status after delivery", func() bool {
		s := status(q, remoteHS)
		return s.Queued == 0 && s.Failures == 0 && !s.LastSent.IsZero()
	})
}

// EDUs go out at most 100 per transaction, in order, each once per
// destination, never to this server.
func TestEDUBatches(t *testing.T) {
	r := newRemote(t)
	nd, _ := newNode(t, r)
	q := New(nd.db, nd.engine, nd.n, nd.client, origin)
	for i := range 250 {
		if err := q.SendEDU(context.Background(), []string{origin, remoteHS, "", remoteHS}, edu(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.SendEDU(context.Background(), []string{remoteHS}, gomatrixserverlib.EDU{Type: "x", Content: []byte("{")}); err == nil {
		t.Fatal("invalid EDU content queued")
	}
	q.Start()
	t.Cleanup(q.Stop)
	eventually(t, "250 EDUs", func() bool { _, acc := r.snapshot(); return eduCount(acc) >= 250 })
	_, acc := r.snapshot()
	if len(acc) != 3 || len(acc[0].Txn.EDUs) != 100 || len(acc[1].Txn.EDUs) != 100 || len(acc[2].Txn.EDUs) != 50 {
		t.Fatalf("%d transactions", len(acc))
	}
	i := 0
	for _, g := range acc {
		if !bytes.Contains(g.Body, []byte(`"pdus":[]`)) {
			t.Fatalf("body without pdus: %s", g.Body[:80])
		}
		for _, e := range g.Txn.EDUs {
			if e.Type != "org.example.test" || e.Origin != origin || e.Destination != remoteHS ||
				gjson.GetBytes(e.Content, "n").Int() != int64(i) {
				t.Fatalf("EDU %d: %+v %s", i, e, e.Content)
			}
			i++
		}
	}
}

// A failing destination is retried with backoff, resending the same
// transaction (same txn ID) until it is accepted.
func TestRetriesUntilAccepted(t *testing.T) {
	r := newRemote(t)
	nd, _ := newNode(t, r)
	n := 0
	r.setReply(func(got) int {
		if n++; n <= 3 {
			return 503
		}
		return 200
	})
	q := nd.queue(t, func(q *Queue) { q.minBackoff, q.maxBackoff = time.Millisecond, 20*time.Millisecond })
	if err := q.SendEDU(context.Background(), []string{remoteHS}, edu(1)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "delivery", func() bool { _, acc := r.snapshot(); return len(acc) == 1 })
	attempts, _ := r.snapshot()
	if len(attempts) != 4 {
		t.Fatalf("%d attempts, want 4", len(attempts))
	}
	for _, a := range attempts {
		if a.ID != attempts[0].ID {
			t.Fatalf("retry with txn ID %s after %s", a.ID, attempts[0].ID)
		}
	}
	eventually(t, "status", func() bool {
		s := status(q, remoteHS)
		return s.Queued == 0 && s.Failures == 0 && !s.LastSent.IsZero()
	})
}

// Wake ends an hour-long backoff at once.
func TestWakeEndsBackoff(t *testing.T) {
	r := newRemote(t)
	nd, _ := newNode(t, r)
	r.setReply(func(got) int { return 500 })
	q := nd.queue(t, func(q *Queue) { q.minBackoff = time.Hour })
	if err := q.SendEDU(context.Background(), []string{remoteHS}, edu(1)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a failure", func() bool { return status(q, remoteHS).Failures == 1 })
	r.setReply(nil)
	q.Wake("unknown.test") // nothing to do there
	q.Wake(remoteHS)
	eventually(t, "delivery after Wake", func() bool { _, acc := r.snapshot(); return len(acc) == 1 })
	attempts, acc := r.snapshot()
	if len(attempts) != 2 || acc[0].ID != attempts[0].ID {
		t.Fatalf("%d attempts; first %s, accepted %s", len(attempts), attempts[0].ID, acc[0].ID)
	}
}

// Wake during an attempt that then fails retries at once instead of
// backing off: LAN discovery wakes a peer's queue when the peer comes
// back, possibly while an attempt begun before is still failing.
func TestWakeDuringAttempt(t *testing.T) {
	r := newRemote(t)
	nd, _ := newNode(t, r)
	r.setReply(func(got) int { return 500 })
	r.setHang(true)
	q := nd.queue(t, func(q *Queue) { q.minBackoff = time.Hour })
	if err := q.SendEDU(context.Background(), []string{remoteHS}, edu(1)); err != nil {
		t.Fatal(err)
	}
	<-r.arrived
	r.setReply(nil)
	q.Wake(remoteHS)
	r.setHang(false) // the attempt in flight fails (500)
	eventually(t, "delivery after a Wake during the failed attempt", func() bool { _, acc := r.snapshot(); return len(acc) == 1 })
}

// Stop cancels a send the remote never answers and keeps the item.
func TestStopWhileDestinationHangs(t *testing.T) {
	r := newRemote(t)
	nd, _ := newNode(t, r)
	r.setHang(true)
	q := nd.queue(t, nil)
	if err := q.SendEDU(context.Background(), []string{remoteHS}, edu(7)); err != nil {
		t.Fatal(err)
	}
	<-r.arrived
	stopped := make(chan struct{})
	go func() { q.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(20 * time.Second): // far beyond "promptly"; only a hang gets here
		t.Fatal("Stop did not return while the destination hangs")
	}
	if s := status(q, remoteHS); s.Queued != 1 {
		t.Fatalf("after Stop: %+v", s)
	}
	r.setHang(false)
	q = nd.queue(t, nil)
	eventually(t, "delivery after restart", func() bool { _, acc := r.snapshot(); return eduCount(acc) == 1 })
}

// A send the remote never answers ends at the send timeout and counts
// as a failure.
func TestSendTimeout(t *testing.T) {
	r := newRemote(t)
	nd, _ := newNode(t, r)
	r.setHang(true)
	q := nd.queue(t, func(q *Queue) { q.minBackoff, q.sendTimeout = time.Hour, time.Second })
	if err := q.SendEDU(context.Background(), []string{remoteHS}, edu(1)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a timed-out attempt", func() bool { return status(q, remoteHS).Failures == 1 })
	if s := status(q, remoteHS); !strings.Contains(s.LastError, "deadline") || s.Queued != 1 {
		t.Fatalf("after the timeout: %+v", s)
	}
	r.setHang(false)
	q.WakeAll()
	// The timed-out request's handler may not have seen its client go
	// before the hang ends, and then accepts it too: a real remote answers
	// the resent transaction ID from its cache, so count distinct IDs.
	eventually(t, "delivery", func() bool {
		_, acc := r.snapshot()
		ids := map[string]bool{}
		for _, g := range acc {
			ids[g.ID] = true
		}
		return len(ids) == 1 && eduCount(acc) >= 1
	})
}

// A transaction the remote rejects as bad is dropped, and the next one
// goes through.
func TestRejectedBatchDoesNotBlock(t *testing.T) {
	r := newRemote(t)
	nd, _ := newNode(t, r)
	q := New(nd.db, nd.engine, nd.n, nd.client, origin)
	for i := range 101 {
		if err := q.SendEDU(context.Background(), []string{remoteHS}, edu(i)); err != nil {
			t.Fatal(err)
		}
	}
	first := true
	r.setReply(func(got) int {
		if first {
			first = false
			return 400
		}
		return 200
	})
	q.minBackoff = time.Hour // a retry would not come within the test
	q.Start()
	t.Cleanup(q.Stop)
	eventually(t, "the second batch", func() bool { _, acc := r.snapshot(); return len(acc) == 1 })
	attempts, acc := r.snapshot()
	if len(attempts) != 2 || len(acc[0].Txn.EDUs) != 1 || gjson.GetBytes(acc[0].Txn.EDUs[0].Content, "n").Int() != 100 {
		t.Fatalf("%d attempts, accepted %+v", len(attempts), acc[0].Txn.EDUs)
	}
	eventually(t, "status", func() bool {
		s := status(q, remoteHS)
		return s.Queued == 0 && s.Failures == 0 && strings.Contains(s.LastError, "M_BAD_JSON")
	})
}

// The first start does not send history; Nudge sends an empty
// transaction; later events follow.
func TestFirstStartAndNudge(t *testing.T) {
	r := newRemote(t)
	nd, _ := newNode(t, r)
	roomID := newRoom(t, nd.engine)
	invite(t, nd.engine, roomID, "@old:"+remoteHS)
	q := nd.queue(t, nil)
	q.Nudge([]string{remoteHS, origin})
	eventually(t, "the nudge", func() bool { _, acc := r.snapshot(); return len(acc) >= 1 })
	_, acc := r.snapshot()
	if len(acc[0].Txn.PDUs) != 0 || len(acc[0].Txn.EDUs) != 0 || !bytes.Contains(acc[0].Body, []byte(`"pdus":[]`)) {
		t.Fatalf("nudge: %s", acc[0].Body)
	}
	invite(t, nd.engine, roomID, "@new:"+remoteHS)
	eventually(t, "the new invite", func() bool { _, acc := r.snapshot(); return pduCount(acc) == 1 })
	_, acc = r.snapshot()
	if len(acc) != 2 || gjson.GetBytes(acc[1].Txn.PDUs[0], "state_key").String() != "@new:"+remoteHS {
		t.Fatalf("sent %d transactions, the second with %s", len(acc), acc[len(acc)-1].Txn.PDUs)
	}
}

// A destination failing for over a day keeps only its newest 500 PDUs
// (and all its EDUs).
func TestTrimAfterADay(t *testing.T) {
	r := newRemote(t)
	nd, _ := newNode(t, r)
	newRoom(t, nd.engine)
	var nid uint64 // a real event: the room's create
	nd.db.View(func(tx *store.Tx) error {
		k, _ := tx.Cursor(store.Events).First()
		nid = store.U64(k)
		return nil
	})
	err := nd.db.Update(context.Background(), func(tx *store.Tx) error {
		for range 510 {
			if err := putEntry(tx, remoteHS, pduValue(nid)); err != nil {
				return err
			}
		}
		if err := putEntry(tx, remoteHS, append([]byte{kindEDU}, `{"t":"x","c":{}}`...)); err != nil {
			return err
		}
		return putState(tx, remoteHS, destState{Failures: 3, FailingSince: time.Now().Add(-25 * time.Hour).UnixMilli()})
	})
	if err != nil {
		t.Fatal(err)
	}
	r.setReply(func(got) int { return 503 })
	q := nd.queue(t, func(q *Queue) { q.minBackoff = time.Hour })
	eventually(t, "the trim", func() bool { return status(q, remoteHS).Queued == 501 })
	var seqs []uint64
	nd.db.View(func(tx *store.Tx) error {
		c := tx.Cursor(store.FedQueue)
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			seqs = append(seqs, store.U64(k[len(remoteHS)+1:]))
		}
		return nil
	})
	if seqs[0] != 11 || seqs[len(seqs)-1] != 511 {
		t.Fatalf("kept seqs %d…%d, want 11…511", seqs[0], seqs[len(seqs)-1])
	}
}
