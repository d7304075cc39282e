package e2e

import (
	"testing"
	"time"

	"maunium.net/go/mautrix"
)

// TestLongPollWakeUp checks that a /sync waiting with timeout=30000 returns
// as soon as another user sends, not when the timeout runs out.
func TestLongPollWakeUp(t *testing.T) {
	t.Parallel()
	d := StartDaemon(t)
	alice := d.Register("alice")
	bob := d.Register("bob")
	roomID := PublicRoom(t, alice, bob)

	// Settle bob's position first: presence updates and the joins must not
	// be what ends the long poll.
	tok := Quiesce(t, bob, Sync(t, bob, "", "", 0).NextBatch)
	SendText(t, alice, roomID, "warm-up") // alice's own first request settles her side too
	tok = SyncUntil(t, bob, tok, "", "warm-up", func(r *mautrix.RespSync) bool { return len(TimelineIDs(r, roomID)) > 0 }).NextBatch
	tok = Quiesce(t, bob, tok)

	type result struct {
		resp    *mautrix.RespSync
		err     error
		started time.Time
		ended   time.Time
	}
	results := make(chan result, 1)
	go func() {
		started := time.Now()
		resp, err := bob.FullSyncRequest(ctx(t), mautrix.ReqSync{Since: tok, Timeout: 30000})
		results <- result{resp, err, started, time.Now()}
	}()

	// Give the request time to reach the server and park; if it has not
	// parked yet it simply returns at once with the event, which also passes.
	var early *result
	select {
	case r := <-results:
		early = &r
	case <-time.After(500 * time.Millisecond):
	}
	if early != nil {
		t.Fatalf("the long poll returned before anything happened (err %v, rooms %+v)", early.err, early.resp)
	}

	sentAt := time.Now()
	eid := SendText(t, alice, roomID, "wake up, bob")
	var r result
	select {
	case r = <-results:
	case <-time.After(40 * time.Second):
		t.Fatal("the long poll did not return within 40 s")
	}
	if r.err != nil {
		t.Fatalf("long poll: %v", r.err)
	}
	if !TimelineHas(r.resp, roomID, eid) {
		t.Fatalf("long poll returned without alice's message: timeline %v", TimelineIDs(r.resp, roomID))
	}
	if wait := r.ended.Sub(sentAt); wait > 5*time.Second {
		t.Errorf("long poll returned %v after the send; it should wake at once", wait)
	}
	t.Logf("long poll returned %v after the send", r.ended.Sub(sentAt))
}

// TestStopEndsLongPolls checks that SIGTERM does not wait for pending long
// polls to run out: a client such as Element always has one open, so a
// daemon that waited for them would stall every quit and OS shutdown.
func TestStopEndsLongPolls(t *testing.T) {
	t.Parallel()
	d := StartDaemon(t)
	alice := d.Register("alice")
	tok := Quiesce(t, alice, Sync(t, alice, "", "", 0).NextBatch)
	polled := make(chan error, 1)
	go func() {
		_, err := alice.FullSyncRequest(ctx(t), mautrix.ReqSync{Since: tok, Timeout: 60000})
		polled <- err
	}()
	// Let the poll park (if it has not yet, the stop is simply quicker).
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	if err := d.Stop(); err != nil {
		t.Errorf("stop with a pending long poll: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("SIGTERM took %v with a /sync long poll pending; the poll should be ended, not waited for", took.Round(time.Millisecond))
	}
	<-polled
}
