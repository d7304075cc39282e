package main

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"
)

// TestFloorDelivers drives the floor server with the bench's own client
// calls: a long poll parked before a send gets the event, a repeated
// transaction ID stores nothing new, and the next poll starts after it.
func TestFloorDelivers(t *testing.T) {
	s, err := openFloor(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.db.Close() })
	srv := httptest.NewServer(s.routes())
	t.Cleanup(srv.Close)
	b := &bench{hc: newHTTPClient()}
	d := &daemon{base: srv.URL}
	poller, sender := &user{d: d, token: "p"}, &user{d: d, token: "s"}
	ctx := context.Background()

	init, err := b.sync(ctx, poller, "", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *syncResp, 1)
	go func() {
		r, err := b.sync(ctx, poller, init.NextBatch, "", 10*time.Second)
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	time.Sleep(50 * time.Millisecond) // let the poll park
	id, err := b.send(ctx, sender, floorRoom, "sync 0")
	if err != nil {
		t.Fatal(err)
	}
	r := <-got
	evs := r.Rooms.Join[floorRoom].Timeline.Events
	if len(evs) != 1 || evs[0].EventID != id || evs[0].Content.Body != "sync 0" {
		t.Fatalf("poll got %+v, want the one event %s", r.Rooms.Join, id)
	}

	sender.txn.Store(0) // the same transaction ID again
	if again, err := b.send(ctx, sender, floorRoom, "sync 0"); err != nil || again != id {
		t.Fatalf("repeated transaction: %q, %v; want %s", again, err, id)
	}
	if empty, err := b.sync(ctx, poller, r.NextBatch, "", 100*time.Millisecond); err != nil || len(empty.Rooms.Join) != 0 {
		t.Fatalf("after the last event: %+v, %v; want nothing", empty, err)
	}
}
