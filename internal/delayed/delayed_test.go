package delayed

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/store"
)

const testServer = "delayed.test"

var testKey = func() ed25519.PrivateKey { _, k, _ := ed25519.GenerateKey(rand.Reader); return k }()

// env is a real bbolt file with the room engine and the service over it,
// wired as the daemon wires them.
type env struct {
	t     *testing.T
	path  string
	db    *store.DB
	rooms *room.Engine
	svc   *Service
	cfg   Config
}

func newEnv(t *testing.T, cfg Config) *env {
	e := &env{t: t, path: filepath.Join(t.TempDir(), "hearth.db"), cfg: cfg}
	e.open()
	t.Cleanup(e.close)
	return e
}

func (e *env) open() {
	st, err := room.Open(room.Options{Path: e.path, Engine: room.Config{ServerName: testServer, KeyID: "ed25519:t", PrivateKey: testKey}})
	if err != nil {
		e.t.Fatal(err)
	}
	e.db, e.rooms = st.DB, st.Engine
	e.svc = New(e.db, e.rooms, e.cfg)
	if err := e.svc.Start(); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) close() {
	if e.db == nil {
		return
	}
	e.svc.Close()
	e.db.Close()
	e.db = nil
}

// restart stops the service and closes the file, waits for fn (the
// downtime), and opens both again.
func (e *env) restart(downtime func()) {
	e.close()
	downtime()
	e.open()
}

func user(name string) string { return "@" + name + ":" + testServer }

func (e *env) room(creator string) string {
	e.t.Helper()
	id, err := e.rooms.CreateRoom(context.Background(), creator, room.Profile{}, room.CreateRequest{Preset: "public_chat"})
	if err != nil {
		e.t.Fatal(err)
	}
	return id
}

func (e *env) schedule(req Request) string {
	e.t.Helper()
	id, err := e.svc.Schedule(context.Background(), req)
	if err != nil {
		e.t.Fatalf("Schedule: %v", err)
	}
	return id
}

func stateReq(userID, roomID, key, value string, delay time.Duration) Request {
	sk := key
	c, _ := json.Marshal(map[string]string{"v": value})
	return Request{UserID: userID, Session: "DEV", RoomID: roomID, Type: "org.example.state", StateKey: &sk,
		Content: c, Delay: delay.Milliseconds()}
}

// state is the org.example.state event at key, or nil.
func (e *env) state(userID, roomID, key string) *room.ClientEvent {
	ev, err := e.rooms.StateEvent(userID, roomID, "org.example.state", key)
	if err != nil {
		var me *matrixerr.Error
		if errors.As(err, &me) && me.Code == "M_NOT_FOUND" {
			return nil
		}
		e.t.Fatal(err)
	}
	return ev
}

// waitFinalised waits, up to a generous deadline, until id is finalised.
func (e *env) waitFinalised(owner, id string) *Event {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		ev, err := e.svc.Get(owner, id)
		if err != nil {
			e.t.Fatal(err)
		}
		if !ev.Scheduled() {
			return ev
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.t.Fatalf("delayed event %s was never finalised", id)
	return nil
}

var on = Config{MaxDelay: time.Hour}

// TestFiresWhenDue: a delayed state event is sent as its owner once its
// delay has run out, never before (its origin_server_ts is at or after
// running_since + delay), and the owner sees its delay ID in unsigned.
func TestFiresWhenDue(t *testing.T) {
	e := newEnv(t, on)
	alice := user("alice")
	roomID := e.room(alice)
	id := e.schedule(stateReq(alice, roomID, "k", "later", 300*time.Millisecond))
	if ev := e.state(alice, roomID, "k"); ev != nil {
		t.Fatalf("state set at once: %+v", ev)
	}
	fin := e.waitFinalised(alice, id)
	if fin.Outcome != OutcomeSend || fin.Reason != ReasonDelay || fin.EventID == "" {
		t.Fatalf("finalised as %+v", fin)
	}
	ev := e.state(alice, roomID, "k")
	if ev == nil || ev.EventID != fin.EventID || ev.Sender != alice || string(ev.Content) != `{"v":"later"}` {
		t.Fatalf("state after firing: %+v, want event %s from %s", ev, fin.EventID, alice)
	}
	if ev.OriginServerTS < fin.Due() {
		t.Errorf("sent at %d, before its due time %d", ev.OriginServerTS, fin.Due())
	}
	if got := ev.Unsigned["org.matrix.msc4140.delay_id"]; got != id {
		t.Errorf("unsigned delay_id %v, want %s", got, id)
	}
	if _, ok := ev.Unsigned["transaction_id"]; ok {
		t.Errorf("a delayed event shows a transaction_id: %v", ev.Unsigned)
	}
	bob := user("bob")
	if _, err := e.rooms.ChangeMembership(context.Background(), room.MembershipRequest{Sender: bob, Target: bob, RoomID: roomID, Membership: "join"}); err != nil {
		t.Fatal(err)
	}
	if ev := e.state(bob, roomID, "k"); ev.Unsigned["org.matrix.msc4140.delay_id"] != nil {
		t.Errorf("another member sees the delay ID: %v", ev.Unsigned)
	}
}

// TestDueDuringDowntimeFiresAtStart: an event that came due while the
// daemon was stopped is sent when it starts again, from the file alone.
func TestDueDuringDowntimeFiresAtStart(t *testing.T) {
	e := newEnv(t, on)
	alice := user("alice")
	roomID := e.room(alice)
	delay := 200 * time.Millisecond
	id := e.schedule(stateReq(alice, roomID, "k", "while down", delay))
	e.restart(func() { time.Sleep(delay + 300*time.Millisecond) })
	fin := e.waitFinalised(alice, id)
	if fin.Outcome != OutcomeSend {
		t.Fatalf("finalised as %+v", fin)
	}
	if ev := e.state(alice, roomID, "k"); ev == nil || ev.EventID != fin.EventID {
		t.Fatalf("state after start: %+v", ev)
	}
}

// TestScheduledSurvivesRestart: an event not yet due at a restart is kept
// and sent later by the new process.
func TestScheduledSurvivesRestart(t *testing.T) {
	e := newEnv(t, on)
	alice := user("alice")
	roomID := e.room(alice)
	id := e.schedule(stateReq(alice, roomID, "k", "after restart", 700*time.Millisecond))
	e.restart(func() {})
	if ev, _ := e.svc.Get(alice, id); ev == nil || !ev.Scheduled() {
		t.Fatalf("after restart: %+v", ev)
	}
	fin := e.waitFinalised(alice, id)
	if ev := e.state(alice, roomID, "k"); fin.Outcome != OutcomeSend || ev == nil || ev.OriginServerTS < fin.Due() {
		t.Fatalf("finalised %+v, state %+v", fin, ev)
	}
}

// TestCancelledNeverFires: a cancelled event is not sent, even well past
// its due time, and a second cancel is a success (a retry).
func TestCancelledNeverFires(t *testing.T) {
	e := newEnv(t, on)
	alice := user("alice")
	roomID := e.room(alice)
	delay := 200 * time.Millisecond
	id := e.schedule(stateReq(alice, roomID, "k", "never", delay))
	ctx := context.Background()
	if err := e.svc.Cancel(ctx, alice, id); err != nil {
		t.Fatal(err)
	}
	time.Sleep(delay + 500*time.Millisecond)
	if ev := e.state(alice, roomID, "k"); ev != nil {
		t.Fatalf("a cancelled event was sent: %+v", ev)
	}
	fin, _ := e.svc.Get(alice, id)
	if fin.Outcome != OutcomeCancel || fin.Reason != ReasonAction {
		t.Fatalf("finalised as %+v", fin)
	}
	if err := e.svc.Cancel(ctx, "", id); err != nil {
		t.Errorf("cancelling again: %v", err)
	}
	for name, err := range map[string]error{"restart": e.svc.Restart(ctx, "", id), "send": e.svc.SendNow(ctx, "", id)} {
		var me *matrixerr.Error
		if !errors.As(err, &me) || me.Status != 409 {
			t.Errorf("%s after cancel: %v, want 409", name, err)
		}
	}
}

// TestRestartResetsTimer: after a restart at t the event is sent no
// earlier than t + delay, and running_since is t.
func TestRestartResetsTimer(t *testing.T) {
	e := newEnv(t, on)
	alice := user("alice")
	roomID := e.room(alice)
	delay := 600 * time.Millisecond
	id := e.schedule(stateReq(alice, roomID, "k", "restarted", delay))
	first, _ := e.svc.Get(alice, id)
	time.Sleep(delay / 2)
	restartedAt := time.Now().UnixMilli()
	if err := e.svc.Restart(context.Background(), alice, id); err != nil {
		t.Fatal(err)
	}
	again, _ := e.svc.Get(alice, id)
	if again.RunningSince < restartedAt || again.Due() <= first.Due() {
		t.Fatalf("restart did not move the timer: before %+v after %+v", first, again)
	}
	fin := e.waitFinalised(alice, id)
	ev := e.state(alice, roomID, "k")
	if fin.Outcome != OutcomeSend || ev == nil {
		t.Fatalf("finalised %+v, state %+v", fin, ev)
	}
	if ev.OriginServerTS < restartedAt+delay.Milliseconds() {
		t.Errorf("sent at %d, before restart time %d + delay %d", ev.OriginServerTS, restartedAt, delay.Milliseconds())
	}
}

// TestSendNow: the send action sends at once; sending again is a
// success, cancelling afterwards a conflict.
func TestSendNow(t *testing.T) {
	e := newEnv(t, on)
	alice := user("alice")
	roomID := e.room(alice)
	id := e.schedule(stateReq(alice, roomID, "k", "now", time.Hour))
	ctx := context.Background()
	if err := e.svc.SendNow(ctx, alice, id); err != nil {
		t.Fatal(err)
	}
	ev := e.state(alice, roomID, "k")
	fin, _ := e.svc.Get(alice, id)
	if ev == nil || fin.Outcome != OutcomeSend || fin.Reason != ReasonAction || fin.EventID != ev.EventID {
		t.Fatalf("after send: event %+v record %+v", ev, fin)
	}
	if err := e.svc.SendNow(ctx, alice, id); err != nil {
		t.Errorf("sending again: %v", err)
	}
	var me *matrixerr.Error
	if err := e.svc.Cancel(ctx, alice, id); !errors.As(err, &me) || me.Status != 409 {
		t.Errorf("cancel after send: %v, want 409", err)
	}
}

// TestFailureIsRecordedNotRetried: an event the owner may no longer send
// when it comes due (they left the room) is finalised with the error of
// the send, once; the send action instead answers the error and keeps it
// scheduled.
func TestFailureIsRecordedNotRetried(t *testing.T) {
	e := newEnv(t, on)
	alice, bob := user("alice"), user("bob")
	roomID := e.room(alice)
	ctx := context.Background()
	if _, err := e.rooms.ChangeMembership(ctx, room.MembershipRequest{Sender: bob, Target: bob, RoomID: roomID, Membership: "join"}); err != nil {
		t.Fatal(err)
	}
	// Bob may not set this state (power 50 needed) at any time.
	id := e.schedule(stateReq(bob, roomID, "k", "forbidden", time.Hour))
	var me *matrixerr.Error
	if err := e.svc.SendNow(ctx, bob, id); !errors.As(err, &me) || me.Code != "M_FORBIDDEN" {
		t.Fatalf("send action: %v, want M_FORBIDDEN", err)
	}
	if ev, _ := e.svc.Get(bob, id); !ev.Scheduled() {
		t.Fatalf("a failed send action finalised the event: %+v", ev)
	}
	id2 := e.schedule(stateReq(bob, roomID, "k2", "forbidden", 100*time.Millisecond))
	fin := e.waitFinalised(bob, id2)
	var got struct{ Errcode string }
	json.Unmarshal(fin.Error, &got)
	if fin.Outcome != OutcomeError || fin.Reason != ReasonDelay || got.Errcode != "M_FORBIDDEN" || fin.EventID != "" {
		t.Fatalf("finalised as %+v (%s)", fin, fin.Error)
	}
	if ev := e.state(alice, roomID, "k2"); ev != nil {
		t.Fatalf("forbidden state was set: %+v", ev)
	}
}

// TestResendAfterCrashIsIdempotent: if the daemon died after sending an
// event but before recording it, sending it again at start returns the
// same event instead of a second one.
func TestResendAfterCrashIsIdempotent(t *testing.T) {
	e := newEnv(t, on)
	alice := user("alice")
	roomID := e.room(alice)
	c, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": "bye"})
	req := Request{UserID: alice, Session: "DEV", TxnID: "t1", RoomID: roomID, Type: "m.room.message", Content: c, Delay: 300}
	id := e.schedule(req)
	// The send the crash interrupted, as sendDue makes it.
	first, err := e.rooms.Send(context.Background(), room.SendRequest{Sender: alice, Device: Session, RoomID: roomID,
		Type: "m.room.message", Content: c, TxnID: TxnID(id)})
	if err != nil {
		t.Fatal(err)
	}
	fin := e.waitFinalised(alice, id)
	if fin.EventID != first {
		t.Fatalf("sent again as %s, the interrupted send made %s", fin.EventID, first)
	}
}

// TestScheduleBadInput: the limits and refusals of scheduling, none of
// which stores anything.
func TestScheduleBadInput(t *testing.T) {
	e := newEnv(t, Config{MaxDelay: time.Minute, MaxScheduled: 2})
	alice := user("alice")
	roomID := e.room(alice)
	ctx := context.Background()
	code := func(err error) (int, string) {
		var me *matrixerr.Error
		if !errors.As(err, &me) {
			t.Fatalf("not a Matrix error: %v", err)
		}
		return me.Status, me.Code
	}
	tooLong := stateReq(alice, roomID, "k", "v", time.Minute+time.Millisecond)
	_, err := e.svc.Schedule(ctx, tooLong)
	var me *matrixerr.Error
	if !errors.As(err, &me) || me.Status != 400 || me.Extra["org.matrix.msc4140.errcode"] != "M_MAX_DELAY_EXCEEDED" ||
		me.Extra["org.matrix.msc4140.max_delay"] != int64(60000) {
		t.Errorf("delay over the maximum: %v %+v", err, me)
	}
	for _, d := range []int64{0, -5} {
		r := stateReq(alice, roomID, "k", "v", 0)
		r.Delay = d
		if st, c := code(func() error { _, err := e.svc.Schedule(ctx, r); return err }()); st != 400 || c != "M_INVALID_PARAM" {
			t.Errorf("delay %d: %d %s", d, st, c)
		}
	}
	e.schedule(stateReq(alice, roomID, "a", "v", time.Minute))
	e.schedule(stateReq(alice, roomID, "b", "v", time.Minute))
	if st, c := code(func() error {
		_, err := e.svc.Schedule(ctx, stateReq(alice, roomID, "c", "v", time.Minute))
		return err
	}()); st != 429 || c != "M_LIMIT_EXCEEDED" {
		t.Errorf("over the per-user cap: %d %s", st, c)
	}
	// Another user has their own cap.
	e.schedule(stateReq(user("bob"), roomID, "c", "v", time.Minute))
	if all, _ := e.svc.List(alice); len(all) != 2 {
		t.Errorf("alice has %d delayed events stored, want 2", len(all))
	}
	off := New(e.db, e.rooms, Config{})
	if st, c := code(func() error { _, err := off.Schedule(ctx, stateReq(alice, roomID, "k", "v", time.Second)); return err }()); st != 403 || c != "M_FORBIDDEN" {
		t.Errorf("disabled: %d %s", st, c)
	}
}

// TestActionsOnOthersAndUnknown: an unknown delay ID, or another user's
// with a token, is 404 and changes nothing.
func TestActionsOnOthersAndUnknown(t *testing.T) {
	e := newEnv(t, on)
	alice := user("alice")
	roomID := e.room(alice)
	id := e.schedule(stateReq(alice, roomID, "k", "v", time.Hour))
	ctx := context.Background()
	before, _ := e.svc.Get(alice, id)
	for _, c := range []struct{ owner, id string }{{user("bob"), id}, {alice, "nope"}, {"", "nope"}} {
		for name, err := range map[string]error{"cancel": e.svc.Cancel(ctx, c.owner, c.id),
			"restart": e.svc.Restart(ctx, c.owner, c.id), "send": e.svc.SendNow(ctx, c.owner, c.id)} {
			var me *matrixerr.Error
			if !errors.As(err, &me) || me.Status != 404 || me.Code != "M_NOT_FOUND" {
				t.Errorf("%s %+v: %v, want 404 M_NOT_FOUND", name, c, err)
			}
		}
	}
	if _, err := e.svc.Get(user("bob"), id); err == nil {
		t.Error("bob can read alice's delayed event")
	}
	after, _ := e.svc.Get(alice, id)
	if *after.StateKey != *before.StateKey || after.RunningSince != before.RunningSince || !after.Scheduled() {
		t.Errorf("changed: %+v → %+v", before, after)
	}
}

// TestRepeatedTxn: the same transaction schedules once.
func TestRepeatedTxn(t *testing.T) {
	e := newEnv(t, on)
	alice := user("alice")
	roomID := e.room(alice)
	req := Request{UserID: alice, Session: "DEV", TxnID: "t1", RoomID: roomID, Type: "m.room.message",
		Content: json.RawMessage(`{"body":"x","msgtype":"m.text"}`), Delay: 60000}
	a, b := e.schedule(req), e.schedule(req)
	if a != b {
		t.Errorf("repeated txn scheduled twice: %s, %s", a, b)
	}
	req.Session = "OTHER"
	if c := e.schedule(req); c == a {
		t.Error("another session's txn was taken for a repeat")
	}
}

// TestFinalisedRetention: only the newest KeepFinalised finalised events
// per user are kept.
func TestFinalisedRetention(t *testing.T) {
	e := newEnv(t, Config{MaxDelay: time.Hour, KeepFinalised: 2})
	alice := user("alice")
	roomID := e.room(alice)
	ctx := context.Background()
	var ids []string
	for i := range 4 {
		id := e.schedule(stateReq(alice, roomID, string(rune('a'+i)), "v", time.Hour))
		if err := e.svc.Cancel(ctx, alice, id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		time.Sleep(2 * time.Millisecond) // distinct finalisation times
	}
	all, _ := e.svc.List(alice)
	if len(all) != 2 {
		t.Fatalf("%d kept, want 2", len(all))
	}
	for _, ev := range all {
		if ev.ID != ids[2] && ev.ID != ids[3] {
			t.Errorf("kept an older one: %s", ev.ID)
		}
	}
}

// TestOwnNewerStateDoesNotCancel: a state event the owner sends to the
// same (type, state key) meanwhile leaves their delayed one scheduled
// (MSC4140: the owner controls their delayed events); it is sent when due
// and overwrites it.
func TestOwnNewerStateDoesNotCancel(t *testing.T) {
	e := newEnv(t, on)
	alice := user("alice")
	roomID := e.room(alice)
	id := e.schedule(stateReq(alice, roomID, "k", "delayed", 300*time.Millisecond))
	sk := "k"
	if _, err := e.rooms.Send(context.Background(), room.SendRequest{Sender: alice, Device: "DEV", RoomID: roomID,
		Type: "org.example.state", StateKey: &sk, Content: json.RawMessage(`{"v":"manual"}`)}); err != nil {
		t.Fatal(err)
	}
	fin := e.waitFinalised(alice, id)
	if ev := e.state(alice, roomID, "k"); fin.Outcome != OutcomeSend || ev == nil || string(ev.Content) != `{"v":"delayed"}` {
		t.Fatalf("finalised %+v, state %+v", fin, ev)
	}
}

// TestDelayedRedaction: a delayed m.room.redaction (MSC4140's
// self-destructing message) redacts the event its content names.
func TestDelayedRedaction(t *testing.T) {
	e := newEnv(t, on)
	alice := user("alice")
	roomID := e.room(alice)
	ctx := context.Background()
	msg, err := e.rooms.Send(ctx, room.SendRequest{Sender: alice, Device: "DEV", RoomID: roomID, Type: "m.room.message",
		Content: json.RawMessage(`{"msgtype":"m.text","body":"self-destructs"}`), TxnID: "m1"})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := json.Marshal(map[string]string{"redacts": msg})
	id := e.schedule(Request{UserID: alice, Session: "DEV", TxnID: "r1", RoomID: roomID, Type: "m.room.redaction", Content: c, Delay: 200})
	if fin := e.waitFinalised(alice, id); fin.Outcome != OutcomeSend {
		t.Fatalf("finalised as %+v (%s)", fin, fin.Error)
	}
	ev, err := e.rooms.Event(alice, roomID, msg)
	if err != nil {
		t.Fatal(err)
	}
	if string(ev.Content) != "{}" || ev.Unsigned["redacted_because"] == nil {
		t.Errorf("not redacted: %s %v", ev.Content, ev.Unsigned)
	}
}

// TestFinalisedExpireAtStart: finalised events older than KeepFor are
// forgotten when the service starts; scheduled ones are kept.
func TestFinalisedExpireAtStart(t *testing.T) {
	e := newEnv(t, Config{MaxDelay: time.Hour, KeepFor: 200 * time.Millisecond})
	alice := user("alice")
	roomID := e.room(alice)
	old := e.schedule(stateReq(alice, roomID, "a", "v", time.Hour))
	if err := e.svc.Cancel(context.Background(), alice, old); err != nil {
		t.Fatal(err)
	}
	kept := e.schedule(stateReq(alice, roomID, "b", "v", time.Hour))
	if all, _ := e.svc.List(alice); len(all) != 2 {
		t.Fatalf("%d before the restart, want 2", len(all))
	}
	e.restart(func() { time.Sleep(300 * time.Millisecond) })
	all, _ := e.svc.List(alice)
	if len(all) != 1 || all[0].ID != kept {
		t.Fatalf("after the restart: %+v, want only %s", all, kept)
	}
}
