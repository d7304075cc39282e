package room

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/tidwall/gjson"

	"github.com/hearth-chat/hearth/internal/store"
)

// 32 goroutines send 50 messages each into one room, some retrying a
// transaction at the same moment (the two requests can land in one batch)
// or after everything is sent, while state events and a join reach the
// room through other paths. The room must end with one linear chain, every
// transaction sent exactly once, and every stored event allowed by
// gomatrixserverlib's auth rules against the state before it.
func TestHotRoomSendsFormOneCheckedChain(t *testing.T) {
	ctx := context.Background()
	e, db := newEngine(t)
	roomID, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ChangeMembership(ctx, MembershipRequest{Sender: bob, RoomID: roomID, Target: bob, Membership: "join"}); err != nil {
		t.Fatal(err)
	}
	const senders, perSender = 32, 50
	msg := func(g, i int) SendRequest {
		sender := alice
		if g%2 == 1 {
			sender = bob
		}
		return SendRequest{Sender: sender, Device: fmt.Sprint("D", g), RoomID: roomID, Type: "m.room.message",
			Content: json.RawMessage(fmt.Sprintf(`{"msgtype":"m.text","body":"%d/%d"}`, g, i)), TxnID: fmt.Sprint("t", i)}
	}
	ids := make([][]string, senders)
	var wg sync.WaitGroup
	for g := range senders {
		ids[g] = make([]string, perSender)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perSender {
				if i%10 == 3 {
					// The same transaction twice at once: one event, one ID.
					var retry string
					var rerr error
					done := make(chan struct{})
					go func() { retry, rerr = e.Send(ctx, msg(g, i)); close(done) }()
					id, err := e.Send(ctx, msg(g, i))
					<-done
					if err != nil || rerr != nil || id != retry {
						t.Errorf("sender %d txn %d: %q (%v) and its retry %q (%v)", g, i, id, err, retry, rerr)
					}
					ids[g][i] = id
					continue
				}
				id, err := e.Send(ctx, msg(g, i))
				if err != nil {
					t.Errorf("sender %d txn %d: %v", g, i, err)
				}
				ids[g][i] = id
			}
		}()
	}
	// State changes in the same room while the messages flow: topics
	// through Send (each ends a batch), a join through the membership path
	// (which moves the room's head under a batch built on the old one).
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 10 {
			topic := fmt.Sprintf(`{"topic":"topic %d"}`, i)
			if _, err := e.Send(ctx, SendRequest{Sender: alice, Device: "T", RoomID: roomID, Type: "m.room.topic",
				StateKey: new(string), Content: json.RawMessage(topic)}); err != nil {
				t.Errorf("topic %d: %v", i, err)
			}
			if i == 5 {
				if _, err := e.ChangeMembership(ctx, MembershipRequest{Sender: charlie, RoomID: roomID, Target: charlie, Membership: "join"}); err != nil {
					t.Errorf("join: %v", err)
				}
			}
		}
	}()
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// Retries after the fact return the first event's ID.
	for g := range senders {
		for _, i := range []int{0, 3, perSender - 1} {
			if id, err := e.Send(ctx, msg(g, i)); err != nil || id != ids[g][i] {
				t.Errorf("late retry of sender %d txn %d: %q (%v), want %q", g, i, id, err, ids[g][i])
			}
		}
	}

	seen := map[string]string{} // "g/i" → event ID
	db.View(func(tx *store.Tx) error {
		info, err := roomInfo(tx, roomID)
		if err != nil {
			t.Fatal(err)
		}
		var prevID string
		var prevDepth int64
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
			checkAllowed(t, e, tx, ev)
			if ev.PDU.Type() == "m.room.message" {
				body := gjson.GetBytes(ev.PDU.Content(), "body").String()
				if _, dup := seen[body]; dup {
					t.Errorf("message %s stored twice", body)
				}
				seen[body] = ev.ID
			}
			return true, nil
		})
		return nil
	})
	for g := range senders {
		for i := range perSender {
			key := fmt.Sprintf("%d/%d", g, i)
			if got, ok := seen[key]; !ok {
				t.Errorf("message %s lost", key)
			} else if got != ids[g][i] {
				t.Errorf("message %s stored as %s, its sender was told %s", key, got, ids[g][i])
			}
		}
	}
	if len(seen) != senders*perSender {
		t.Errorf("%d messages stored, want %d", len(seen), senders*perSender)
	}
}

const charlie = "@charlie:test.local"

// eachAllowedEvent calls fn with each event of roomID's timeline in
// order, once checkAllowed has passed it.
func eachAllowedEvent(t *testing.T, e *Engine, db *store.DB, roomID string, fn func(*Event)) {
	t.Helper()
	err := db.View(func(tx *store.Tx) error {
		info, err := roomInfo(tx, roomID)
		if err != nil {
			return err
		}
		return scanTimeline(tx, info.NID, 0, Forward, func(_, nid uint64) (bool, error) {
			ev, err := e.loadEvent(tx, nid)
			if err != nil {
				return false, err
			}
			checkAllowed(t, e, tx, ev)
			fn(ev)
			return true, nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkAllowed runs gomatrixserverlib's auth rules for ev against the room
// state before it, as stored in its snapshot.
func checkAllowed(t *testing.T, e *Engine, tx *store.Tx, ev *Event) {
	t.Helper()
	if ev.PDU.Type() == "m.room.create" {
		return
	}
	state, err := stateAt(tx, ev.StateBefore)
	if err != nil {
		t.Fatal(err)
	}
	needed := gomatrixserverlib.StateNeededForAuth([]gomatrixserverlib.PDU{ev.PDU})
	var pdus []gomatrixserverlib.PDU
	for _, tup := range needed.Tuples() {
		if nid := state[stateKey(tup.EventType, tup.StateKey)]; nid != 0 {
			aev, err := e.loadEvent(tx, nid)
			if err != nil {
				t.Fatal(err)
			}
			pdus = append(pdus, aev.PDU)
		}
	}
	provider, err := gomatrixserverlib.NewAuthEvents(pdus)
	if err != nil {
		t.Fatal(err)
	}
	if err := gomatrixserverlib.Allowed(ev.PDU, provider, userIDForSender); err != nil {
		t.Errorf("%s (%s from %s) not allowed by the state before it: %v", ev.ID, ev.PDU.Type(), ev.PDU.SenderID(), err)
	}
}

// One batch holding a transaction twice, and a send its sender may not
// make: the retry gets the first event's ID and no event of its own, the
// refused send its error, and the rest of the batch is sent.
func TestBatchWithRetriedTxnAndRefusedSend(t *testing.T) {
	ctx := context.Background()
	e, db := newEngine(t)
	roomID, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	req := func(sender, txn, body string) *pendingSend {
		return &pendingSend{ctx: ctx, done: make(chan struct{}), req: SendRequest{Sender: sender, Device: "D", RoomID: roomID,
			Type: "m.room.message", Content: json.RawMessage(`{"body":"` + body + `"}`), TxnID: txn}}
	}
	first, other, refused, retry := req(alice, "1", "a"), req(alice, "2", "b"), req(charlie, "1", "c"), req(alice, "1", "a")
	e.sendBatch(roomID, []*pendingSend{first, other, refused, retry})
	for _, p := range []*pendingSend{first, other, refused, retry} {
		<-p.done
	}
	if first.err != nil || other.err != nil || retry.err != nil || first.id == "" || other.id == "" {
		t.Fatalf("sends: %q %v, %q %v, retry %q %v", first.id, first.err, other.id, other.err, retry.id, retry.err)
	}
	if retry.id != first.id {
		t.Errorf("retry in the same batch got %s, the first send %s", retry.id, first.id)
	}
	if refused.err == nil {
		t.Errorf("a non-member's send was accepted as %s", refused.id)
	}
	if id, err := e.Send(ctx, first.req); err != nil || id != first.id {
		t.Errorf("later retry: %q %v, want %s", id, err, first.id)
	}
	var bodies []string
	eachAllowedEvent(t, e, db, roomID, func(ev *Event) {
		if ev.PDU.Type() == "m.room.message" {
			bodies = append(bodies, gjson.GetBytes(ev.PDU.Content(), "body").String())
		}
	})
	if fmt.Sprint(bodies) != "[a b]" {
		t.Errorf("stored messages %v, want [a b]", bodies)
	}
}

// A send whose client has gone before its turn is not sent; the others of
// its batch are.
func TestSendWithEndedContextIsNotSent(t *testing.T) {
	ctx := context.Background()
	e, db := newEngine(t)
	roomID, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	gone, cancel := context.WithCancel(ctx)
	cancel()
	msg := func(c context.Context, txn string) *pendingSend {
		return &pendingSend{ctx: c, done: make(chan struct{}), req: SendRequest{Sender: alice, Device: "D", RoomID: roomID,
			Type: "m.room.message", Content: json.RawMessage(`{"body":"` + txn + `"}`), TxnID: txn}}
	}
	left, stayed := msg(gone, "left"), msg(ctx, "stayed")
	e.sendBatch(roomID, []*pendingSend{left, stayed})
	<-left.done
	<-stayed.done
	if left.err == nil || stayed.err != nil {
		t.Fatalf("ended context: %q %v; live one: %q %v", left.id, left.err, stayed.id, stayed.err)
	}
	late := msg(gone, "late").req
	if _, err := e.Send(gone, late); err == nil {
		t.Error("Send with an ended context succeeded")
	}
	db.View(func(tx *store.Tx) error {
		for _, req := range []SendRequest{left.req, late} {
			if id, err := e.sentBefore(tx, req); id != "" || err != nil {
				t.Errorf("transaction %s of an ended context was recorded (event %s, %v)", req.TxnID, id, err)
			}
		}
		return nil
	})
}

// The sender who starts a room's queue builds its own batch; sends queued
// behind a batch that ends early (at a state event) go to a builder
// goroutine, and every one is sent in queue order. A lone Send leaves no
// queue behind once it returns.
func TestFirstSenderBuildsAndHandsOn(t *testing.T) {
	ctx := context.Background()
	e, db := newEngine(t)
	roomID, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	topic := ""
	first := &pendingSend{ctx: ctx, done: make(chan struct{}), req: SendRequest{Sender: alice, Device: "D", RoomID: roomID,
		Type: "m.room.topic", StateKey: &topic, Content: json.RawMessage(`{"topic":"t"}`)}}
	q := e.enqueue(first)
	if q == nil {
		t.Fatal("the first send of an idle room was not made its builder")
	}
	var behind []*pendingSend
	for _, body := range []string{"a", "b"} {
		p := &pendingSend{ctx: ctx, done: make(chan struct{}), req: SendRequest{Sender: alice, Device: "D", RoomID: roomID,
			Type: "m.room.message", Content: json.RawMessage(`{"body":"` + body + `"}`), TxnID: body}}
		if e.enqueue(p) != nil {
			t.Fatal("a send queued behind a builder was made a builder too")
		}
		behind = append(behind, p)
	}
	e.buildFirst(roomID, q)
	select {
	case <-first.done:
	default:
		t.Fatal("buildFirst returned before the caller's own send was done")
	}
	for _, p := range append([]*pendingSend{first}, behind...) {
		<-p.done // hangs if nobody took over the sends behind
		if p.err != nil {
			t.Fatalf("send %s: %v", p.req.TxnID, p.err)
		}
	}
	if _, err := e.Send(ctx, SendRequest{Sender: alice, Device: "D", RoomID: roomID, Type: "m.room.message",
		Content: json.RawMessage(`{"body":"c"}`), TxnID: "c"}); err != nil {
		t.Fatal(err)
	}
	e.seq.mu.Lock()
	left := len(e.seq.rooms)
	e.seq.mu.Unlock()
	if left != 0 {
		t.Errorf("%d room queues left after the last Send returned", left)
	}
	var got []string
	eachAllowedEvent(t, e, db, roomID, func(ev *Event) {
		switch ev.PDU.Type() {
		case "m.room.topic":
			got = append(got, "topic")
		case "m.room.message":
			got = append(got, gjson.GetBytes(ev.PDU.Content(), "body").String())
		}
	})
	if fmt.Sprint(got) != "[topic a b c]" {
		t.Errorf("timeline %v, want [topic a b c]", got)
	}
}
