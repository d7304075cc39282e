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

// TestFloorDistance: the distance row is the first row's figures minus the
// floor's, and has none when either row failed.
func TestFloorDistance(t *testing.T) {
	hearth := row{nums: figs(fig("p50", 3.81, "ms"), fig("p99", 9.36, "ms"))}
	floor := row{nums: figs(fig("p50", 2.94, "ms"), fig("p99", 6.96, "ms"))}
	d := floorDistance(hearth, floor)
	if d.failed || len(d.nums) != 2 || d.value != "0.87 / 2.40 ms" {
		t.Fatalf("distance = %+v", d)
	}
	if d.nums[0].Label != "p50" || d.nums[1].Label != "p99" || d.nums[0].Unit != "ms" {
		t.Fatalf("figures = %+v", d.nums)
	}
	floor.failed = true
	if d := floorDistance(hearth, floor); !d.failed || len(d.nums) != 0 {
		t.Fatalf("with the floor failed: %+v", d)
	}
	if d := floorDistance(row{failed: true}, row{nums: floor.nums}); !d.failed {
		t.Fatalf("with the first row failed: %+v", d)
	}
}
