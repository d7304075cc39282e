package room

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// aggFixture is a room where alice wrote a root message with a thread,
// edits and a reference.
type aggFixture struct {
	e                  *Engine
	room, root         string
	r1, r2, edit2, ref string
}

func sendJSON(t *testing.T, e *Engine, sender, roomID, content string) string {
	t.Helper()
	id, err := e.Send(context.Background(), SendRequest{Sender: sender, Device: "D", RoomID: roomID, Type: "m.room.message",
		Content: json.RawMessage(content)})
	if err != nil {
		t.Fatalf("send %s: %v", content, err)
	}
	return id
}

func rel(relType, parent string) string {
	return fmt.Sprintf(`"m.relates_to":{"rel_type":%q,"event_id":%q}`, relType, parent)
}

func newAggFixture(t *testing.T) *aggFixture {
	ctx := context.Background()
	e, _ := newEngine(t)
	// A clock that moves 1 ms per event: which edit is newest is decided
	// by origin_server_ts, and two sends can share a millisecond.
	clock := time.UnixMilli(1_700_000_000_000)
	e.now = func() time.Time { clock = clock.Add(time.Millisecond); return clock }
	roomID, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ChangeMembership(ctx, MembershipRequest{Sender: bob, RoomID: roomID, Target: bob, Membership: "join"}); err != nil {
		t.Fatal(err)
	}
	f := &aggFixture{e: e, room: roomID}
	f.root = sendJSON(t, e, alice, roomID, `{"msgtype":"m.text","body":"root"}`)
	f.r1 = sendJSON(t, e, alice, roomID, `{"msgtype":"m.text","body":"first reply",`+rel("m.thread", f.root)+`}`)
	f.r2 = sendJSON(t, e, bob, roomID, `{"msgtype":"m.text","body":"second reply",`+rel("m.thread", f.root)+`}`)
	sendJSON(t, e, alice, roomID, `{"msgtype":"m.text","body":"* edit 1","m.new_content":{"body":"edit 1"},`+rel("m.replace", f.root)+`}`)
	f.edit2 = sendJSON(t, e, alice, roomID, `{"msgtype":"m.text","body":"* edit 2","m.new_content":{"body":"edit 2"},`+rel("m.replace", f.root)+`}`)
	// Bob may not edit alice's message: his replacement is not bundled.
	sendJSON(t, e, bob, roomID, `{"msgtype":"m.text","body":"* bob","m.new_content":{"body":"bob"},`+rel("m.replace", f.root)+`}`)
	f.ref = sendJSON(t, e, bob, roomID, `{"msgtype":"m.text","body":"see above",`+rel("m.reference", f.root)+`}`)
	return f
}

// relations decodes unsigned["m.relations"] of a served event.
type bundled struct {
	Thread *struct {
		Latest       ClientEvent `json:"latest_event"`
		Count        int         `json:"count"`
		Participated bool        `json:"current_user_participated"`
	} `json:"m.thread"`
	Replace   *ClientEvent `json:"m.replace"`
	Reference *struct {
		Chunk []struct {
			EventID string `json:"event_id"`
		} `json:"chunk"`
	} `json:"m.reference"`
}

func relationsOf(t *testing.T, ce ClientEvent) bundled {
	t.Helper()
	var out bundled
	b, _ := json.Marshal(ce.Unsigned["m.relations"])
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func (f *aggFixture) check(t *testing.T, where string, ce ClientEvent, count int, latest string, participated bool) {
	t.Helper()
	b := relationsOf(t, ce)
	if b.Thread == nil || b.Thread.Count != count || b.Thread.Latest.EventID != latest || b.Thread.Participated != participated {
		t.Fatalf("%s: m.thread = %+v, want count %d latest %s participated %v", where, b.Thread, count, latest, participated)
	}
	if b.Replace == nil || b.Replace.EventID != f.edit2 {
		t.Fatalf("%s: m.replace = %+v, want alice's latest edit %s", where, b.Replace, f.edit2)
	}
	if b.Reference == nil || len(b.Reference.Chunk) != 1 || b.Reference.Chunk[0].EventID != f.ref {
		t.Fatalf("%s: m.reference = %+v", where, b.Reference)
	}
}

func TestBundledAggregationsInEveryEndpoint(t *testing.T) {
	f := newAggFixture(t)
	e := f.e
	ev, err := e.Event(bob, f.room, f.root)
	if err != nil {
		t.Fatal(err)
	}
	f.check(t, "/event", *ev, 2, f.r2, true)

	page, err := e.Messages(alice, "D", f.room, 1<<62, 0, Backward, EventFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ce := range page.Chunk {
		if ce.EventID == f.root {
			f.check(t, "/messages", ce, 2, f.r2, true)
			found = true
		} else if ce.EventID == f.r1 && ce.Unsigned["m.relations"] != nil {
			t.Fatalf("a reply without children got aggregations: %v", ce.Unsigned)
		}
	}
	if !found {
		t.Fatal("/messages lacks the root")
	}

	ctx, err := e.Context(alice, "D", f.room, f.root, 2, EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	f.check(t, "/context", ctx.Event, 2, f.r2, true)

	// A thread reply's own relations (none) and the root reached via
	// /relations of another event: relations of the root list its children.
	sync, err := e.Sync(SyncRequest{UserID: alice, Device: "D", Now: 1 << 62, Timeline: EventFilter{Limit: 50}})
	if err != nil {
		t.Fatal(err)
	}
	found = false
	for _, ce := range sync.Join[f.room].Timeline.Events {
		if ce.EventID == f.root {
			f.check(t, "/sync", ce, 2, f.r2, true)
			found = true
		}
	}
	if !found {
		t.Fatal("/sync timeline lacks the root")
	}
}

func TestAggregationsRespectVisibilityAndRedaction(t *testing.T) {
	ctx := context.Background()
	f := newAggFixture(t)
	e := f.e
	// Only members may see history from now on, and bob leaves: the
	// reply alice sends after that is not counted for bob.
	sk := ""
	if _, err := e.Send(ctx, SendRequest{Sender: alice, RoomID: f.room, Type: "m.room.history_visibility", StateKey: &sk,
		Content: json.RawMessage(`{"history_visibility":"joined"}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ChangeMembership(ctx, MembershipRequest{Sender: bob, RoomID: f.room, Target: bob, Membership: "leave"}); err != nil {
		t.Fatal(err)
	}
	r3 := sendJSON(t, e, alice, f.room, `{"msgtype":"m.text","body":"third reply",`+rel("m.thread", f.root)+`}`)
	ev, err := e.Event(bob, f.room, f.root)
	if err != nil {
		t.Fatal(err)
	}
	f.check(t, "bob after leaving", *ev, 2, f.r2, true)
	ev, _ = e.Event(alice, f.room, f.root)
	f.check(t, "alice", *ev, 3, r3, true)

	// Redacting the latest reply drops it from the count.
	if _, err := e.Send(ctx, SendRequest{Sender: alice, RoomID: f.room, Type: "m.room.redaction", Redacts: r3, TxnID: "x"}); err != nil {
		t.Fatal(err)
	}
	ev, _ = e.Event(alice, f.room, f.root)
	f.check(t, "after redaction", *ev, 2, f.r2, true)
}

func TestThreadsList(t *testing.T) {
	f := newAggFixture(t)
	e := f.e
	// A second, newer thread started by bob, with a reply by bob only.
	root2 := sendJSON(t, e, bob, f.room, `{"msgtype":"m.text","body":"root 2"}`)
	sendJSON(t, e, bob, f.room, `{"msgtype":"m.text","body":"r",`+rel("m.thread", root2)+`}`)
	carol := "@carol:test.local"
	if _, err := e.ChangeMembership(context.Background(), MembershipRequest{Sender: carol, RoomID: f.room, Target: carol, Membership: "join"}); err != nil {
		t.Fatal(err)
	}

	all, next, err := e.Threads(ThreadsRequest{UserID: alice, RoomID: f.room})
	if err != nil || next != 0 || len(all) != 2 || all[0].EventID != root2 || all[1].EventID != f.root {
		t.Fatalf("all threads: %v next %d %v", ids(all), next, err)
	}
	if b := relationsOf(t, all[0]); b.Thread == nil || b.Thread.Count != 1 || b.Thread.Participated {
		t.Fatalf("alice did not take part in bob's thread: %+v", b.Thread)
	}
	// Activity moves a thread to the top.
	sendJSON(t, e, alice, f.room, `{"msgtype":"m.text","body":"bump",`+rel("m.thread", f.root)+`}`)
	all, _, _ = e.Threads(ThreadsRequest{UserID: alice, RoomID: f.room})
	if len(all) != 2 || all[0].EventID != f.root {
		t.Fatalf("after a reply the old thread should lead: %v", ids(all))
	}
	// Pages of one: no duplicates, no gaps.
	p1, next, err := e.Threads(ThreadsRequest{UserID: alice, RoomID: f.room, Limit: 1})
	if err != nil || len(p1) != 1 || next == 0 {
		t.Fatalf("page 1: %v %d %v", ids(p1), next, err)
	}
	p2, next2, err := e.Threads(ThreadsRequest{UserID: alice, RoomID: f.room, Limit: 1, From: next})
	if err != nil || len(p2) != 1 || next2 != 0 || p2[0].EventID == p1[0].EventID {
		t.Fatalf("page 2: %v %d %v", ids(p2), next2, err)
	}
	// Participation: alice took part only in her own thread; carol in none.
	mine, _, _ := e.Threads(ThreadsRequest{UserID: alice, RoomID: f.room, Participated: true})
	if len(mine) != 1 || mine[0].EventID != f.root {
		t.Fatalf("alice participated: %v", ids(mine))
	}
	bobs, _, _ := e.Threads(ThreadsRequest{UserID: bob, RoomID: f.room, Participated: true})
	if len(bobs) != 2 {
		t.Fatalf("bob participated in both: %v", ids(bobs))
	}
	none, _, _ := e.Threads(ThreadsRequest{UserID: carol, RoomID: f.room, Participated: true})
	if len(none) != 0 {
		t.Fatalf("carol participated in none: %v", ids(none))
	}
	if _, _, err := e.Threads(ThreadsRequest{UserID: "@eve:test.local", RoomID: "!nope:test.local"}); err == nil {
		t.Fatal("a non-member listed threads of an unknown room")
	}
}

func ids(evs []ClientEvent) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.EventID)
	}
	return out
}

func TestAggregationsInRelationsAndDepthLimit(t *testing.T) {
	f := newAggFixture(t)
	e := f.e
	// An edit of the first thread reply: /relations of the root serves
	// that reply with its m.replace bundle.
	edit := sendJSON(t, e, alice, f.room, `{"msgtype":"m.text","body":"* r1","m.new_content":{"body":"r1"},`+rel("m.replace", f.r1)+`}`)
	evs, _, err := e.Relations(RelationsRequest{UserID: alice, RoomID: f.room, ParentID: f.root, RelType: "m.thread", Dir: Forward})
	if err != nil || len(evs) != 2 || evs[0].EventID != f.r1 {
		t.Fatalf("relations: %v %v", ids(evs), err)
	}
	if b := relationsOf(t, evs[0]); b.Replace == nil || b.Replace.EventID != edit {
		t.Fatalf("/relations: r1 lacks its edit: %+v", evs[0].Unsigned)
	}
	// A chain of events each threading on the previous is bundled two
	// levels deep, not to its end.
	prev := f.r2
	for range 5 {
		prev = sendJSON(t, e, bob, f.room, `{"msgtype":"m.text","body":"chain",`+rel("m.thread", prev)+`}`)
	}
	ev, _ := e.Event(alice, f.room, f.r2)
	depth := 0
	for cur := ev.Unsigned; cur != nil; depth++ {
		rels, _ := cur["m.relations"].(map[string]any)
		th, _ := rels["m.thread"].(map[string]any)
		if th == nil {
			break
		}
		latest := th["latest_event"].(ClientEvent)
		cur = latest.Unsigned
	}
	if depth != maxBundleDepth {
		t.Fatalf("bundles nested %d deep, want %d", depth, maxBundleDepth)
	}
}
