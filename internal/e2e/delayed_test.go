package e2e

import (
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// Delayed events (MSC4140) against a real daemon, through plain HTTP as
// Element Call's matrix-js-sdk sends it: PUT /state with
// org.matrix.msc4140.delay, POST /delayed_events/{id} with an action in
// the body, or the action in the path without a token.

const msc4140Prefix = "/_matrix/client/unstable/org.matrix.msc4140"

func delayedStatePath(roomID id.RoomID, key string) string {
	return "/_matrix/client/v3/rooms/" + url.PathEscape(roomID.String()) + "/state/org.example.delayed/" + url.PathEscape(key)
}

// scheduleState schedules the state event at key with delay and returns
// its delay ID.
func scheduleState(t *testing.T, c *mautrix.Client, roomID id.RoomID, key string, delay time.Duration) string {
	t.Helper()
	status, body := Raw(t, c, "PUT", delayedStatePath(roomID, key)+"?org.matrix.msc4140.delay="+
		itoa(delay.Milliseconds()), map[string]string{"set": key})
	var r struct {
		DelayID string `json:"delay_id"`
	}
	if json.Unmarshal(body, &r); status != 200 || r.DelayID == "" {
		t.Fatalf("scheduling %s: %d %s", key, status, body)
	}
	return r.DelayID
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// delayedState is the state event at key, or nil if there is none.
func delayedState(t *testing.T, c *mautrix.Client, roomID id.RoomID, key string) map[string]any {
	t.Helper()
	status, body := Raw(t, c, "GET", delayedStatePath(roomID, key)+"?format=event", nil)
	if status == 404 {
		return nil
	}
	var ev map[string]any
	if json.Unmarshal(body, &ev); status != 200 || ev == nil {
		t.Fatalf("state %s: %d %s", key, status, body)
	}
	return ev
}

// waitDelayedState waits up to waitDeadline for the state event at key.
func waitDelayedState(t *testing.T, c *mautrix.Client, roomID id.RoomID, key string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(waitDeadline)
	for time.Now().Before(deadline) {
		if ev := delayedState(t, c, roomID, key); ev != nil {
			return ev
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the delayed state event %s never appeared", key)
	return nil
}

func tsOf(ev map[string]any) int64 { f, _ := ev["origin_server_ts"].(float64); return int64(f) }

// TestDelayedEventsAcrossRestart: a delayed state event that came due
// while the daemon was stopped is sent when it starts, one not yet due is
// sent by the new process at its time, a cancelled one never is, a
// restarted one only a full delay after the restart, and the send action
// sends at once.
func TestDelayedEventsAcrossRestart(t *testing.T) {
	d := StartDaemon(t)
	alice := d.Register("alice")
	roomID := must(alice.CreateRoom(ctx(t), &mautrix.ReqCreateRoom{Preset: "private_chat"})).get(t).RoomID

	const dueInDowntime, dueAfterStart = 3 * time.Second, 12 * time.Second
	t0 := time.Now()
	scheduleState(t, alice, roomID, "down", dueInDowntime)
	scheduleState(t, alice, roomID, "later", dueAfterStart)
	noErr(t, d.Stop(), "stopping hearth")
	time.Sleep(time.Until(t0.Add(dueInDowntime + 500*time.Millisecond)))
	started := time.Now().UnixMilli()
	d.Start()

	ev := waitDelayedState(t, alice, roomID, "down")
	if tsOf(ev) < started {
		t.Errorf("the event due during the downtime was sent at %d, before the daemon started again at %d", tsOf(ev), started)
	}
	if ev["sender"] != alice.UserID.String() {
		t.Errorf("sent by %v", ev["sender"])
	}
	later := waitDelayedState(t, alice, roomID, "later")
	if tsOf(later) < t0.Add(dueAfterStart).UnixMilli() {
		t.Errorf("the event scheduled across the restart was sent at %d, before its time %d", tsOf(later), t0.Add(dueAfterStart).UnixMilli())
	}

	// Cancelled (the path form, without a token): never sent.
	const short = time.Second
	cancelled := scheduleState(t, alice, roomID, "cancelled", short)
	anon := d.Client("", "")
	if status, body := Raw(t, anon, "POST", msc4140Prefix+"/delayed_events/"+cancelled+"/cancel", map[string]any{}); status != 200 {
		t.Fatalf("cancel: %d %s", status, body)
	}
	// Restarted half-way (the body form, as js-sdk sends it): sent only
	// a full delay after the restart.
	const delay = 2 * time.Second
	restarted := scheduleState(t, alice, roomID, "restarted", delay)
	time.Sleep(delay / 2)
	restartedAt := time.Now().UnixMilli()
	if status, body := Raw(t, alice, "POST", msc4140Prefix+"/delayed_events/"+restarted, map[string]string{"action": "restart"}); status != 200 {
		t.Fatalf("restart: %d %s", status, body)
	}
	ev = waitDelayedState(t, alice, roomID, "restarted")
	if tsOf(ev) < restartedAt+delay.Milliseconds() {
		t.Errorf("restarted at %d with delay %v, sent at %d", restartedAt, delay, tsOf(ev))
	}
	// The cancelled one came due (short) at least two seconds ago: it
	// was scheduled before the restarted one, which was sent a full delay
	// after half a delay.
	if ev := delayedState(t, alice, roomID, "cancelled"); ev != nil {
		t.Fatalf("a cancelled delayed event was sent: %v", ev)
	}

	// Send now.
	now := scheduleState(t, alice, roomID, "now", time.Hour)
	if status, body := Raw(t, alice, "POST", msc4140Prefix+"/delayed_events/"+now, map[string]string{"action": "send"}); status != 200 {
		t.Fatalf("send: %d %s", status, body)
	}
	if ev := delayedState(t, alice, roomID, "now"); ev == nil {
		t.Fatal("the send action did not send the event")
	}

	// The list: nothing left scheduled; the cancelled one finalised as such.
	status, body := Raw(t, alice, "GET", msc4140Prefix+"/delayed_events?dir=b&since_ts=end&order_by=origin_server_ts", nil)
	var list struct {
		Events []struct {
			DelayID string `json:"delay_id"`
			Outcome string `json:"outcome"`
			EventID string `json:"event_id"`
		} `json:"delayed_events"`
	}
	if json.Unmarshal(body, &list); status != 200 || len(list.Events) != 5 {
		t.Fatalf("list: %d %s", status, body)
	}
	for _, e := range list.Events {
		want := "send"
		if e.DelayID == cancelled {
			want = "cancel"
		}
		if e.Outcome != want || (want == "send") != (e.EventID != "") {
			t.Errorf("%s finalised as %q (event %q), want %q", e.DelayID, e.Outcome, e.EventID, want)
		}
	}
}
