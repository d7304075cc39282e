package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// What the tests do as Matrix clients (mautrix-go) against the daemons the
// harness runs: accounts, sync, rooms, messages, raw requests, and
// checking errors.

// UserID is the full user ID of a user of this daemon.
func (d *Daemon) UserID(name string) id.UserID { return id.NewUserID(name, d.ServerName()) }

// Password is the password the harness gives user name.
func Password(name string) string { return "pw-of-" + name + "-e2e" }

// Register creates user name through /register with the dummy stage and
// returns a client logged in as that user.
func (d *Daemon) Register(name string) *mautrix.Client {
	d.t.Helper()
	c := d.Client("", "")
	resp, err := c.RegisterDummy(ctx(d.t), &mautrix.ReqRegister{Username: name, Password: Password(name)})
	if err != nil {
		d.t.Fatalf("register %s: %v", name, err)
	}
	if resp.UserID != d.UserID(name) {
		d.t.Fatalf("register %s: got user ID %s", name, resp.UserID)
	}
	c.UserID, c.AccessToken = resp.UserID, resp.AccessToken
	c.DeviceID = resp.DeviceID
	return c
}

// Login logs user name in with their password as a new device.
func (d *Daemon) Login(name string) *mautrix.Client {
	d.t.Helper()
	return d.LoginDevice(name, "")
}

// LoginDevice logs in with an initial device display name.
func (d *Daemon) LoginDevice(name, displayName string) *mautrix.Client {
	d.t.Helper()
	c := d.Client("", "")
	_, err := c.Login(ctx(d.t), &mautrix.ReqLogin{
		Type:                     mautrix.AuthTypePassword,
		Identifier:               mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: name},
		Password:                 Password(name),
		InitialDeviceDisplayName: displayName,
		StoreCredentials:         true,
	})
	if err != nil {
		d.t.Fatalf("login %s: %v", name, err)
	}
	return c
}

// must pairs a call's result with its error; .get(t) fails the test on the
// error: must(c.JoinedRooms(ctx(t))).get(t).
func must[T any](v T, err error) result[T] { return result[T]{v, err} }

type result[T any] struct {
	v   T
	err error
}

func (r result[T]) get(t testing.TB) T {
	t.Helper()
	if r.err != nil {
		t.Fatalf("%v", r.err)
	}
	return r.v
}

// noErr fails the test on err, naming what was being done.
func noErr(t testing.TB, err error, what string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(what, args...), err)
	}
}

// wantMatrixErr checks that err is an HTTP error with the status and
// errcode given.
func wantMatrixErr(t testing.TB, err error, status int, errcode string, what string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want %d %s", what, status, errcode)
	}
	var he mautrix.HTTPError
	if !errors.As(err, &he) || he.Response == nil {
		t.Fatalf("%s: got %v, want HTTP %d %s", what, err, status, errcode)
	}
	code := ""
	if he.RespError != nil {
		code = he.RespError.ErrCode
	}
	if he.Response.StatusCode != status || code != errcode {
		t.Fatalf("%s: got HTTP %d %s (%s), want %d %s", what, he.Response.StatusCode, code, he.ResponseBody, status, errcode)
	}
}

// Raw does a request with the client's token outside mautrix's typed
// helpers and returns the status and the body.
func Raw(t testing.TB, c *mautrix.Client, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx(t), method, c.HomeserverURL.String()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if c.AccessToken != "" {
		req.Header.Set("Authorization", "Bearer "+c.AccessToken)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Client.Do(req) // a namespaced daemon's client dials into its namespace
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// Sync runs one /sync with the given since token and filter (ID or JSON)
// and a long-poll timeout.
func Sync(t testing.TB, c *mautrix.Client, since, filter string, timeout time.Duration) *mautrix.RespSync {
	t.Helper()
	resp, err := c.FullSyncRequest(ctx(t), mautrix.ReqSync{Since: since, FilterID: filter, Timeout: int(timeout.Milliseconds())})
	if err != nil {
		t.Fatalf("sync as %s since %q: %v", c.UserID, since, err)
	}
	return resp
}

// SyncUntil runs incremental syncs from since until pred accepts a
// response, and returns that response. Every response is passed to pred, so
// it can collect what it needs across them. It fails after waitDeadline.
func SyncUntil(t testing.TB, c *mautrix.Client, since, filter string, what string, pred func(*mautrix.RespSync) bool) *mautrix.RespSync {
	t.Helper()
	deadline := time.Now().Add(waitDeadline)
	for time.Now().Before(deadline) {
		resp := Sync(t, c, since, filter, 2*time.Second)
		if pred(resp) {
			return resp
		}
		since = resp.NextBatch
	}
	t.Fatalf("%s: not seen in /sync of %s within %v", what, c.UserID, waitDeadline)
	return nil
}

// Quiesce syncs until a sync with timeout 0 returns nothing new, so that
// the returned token is past every change made so far.
func Quiesce(t testing.TB, c *mautrix.Client, since string) string {
	t.Helper()
	for range 50 {
		resp := Sync(t, c, since, "", 0)
		if resp.NextBatch == since {
			return since
		}
		since = resp.NextBatch
	}
	t.Fatalf("sync of %s did not settle", c.UserID)
	return ""
}

// TimelineIDs returns the event IDs of a room's timeline in a sync.
func TimelineIDs(resp *mautrix.RespSync, roomID id.RoomID) []id.EventID {
	jr := resp.Rooms.Join[roomID]
	if jr == nil {
		return nil
	}
	var out []id.EventID
	for _, ev := range jr.Timeline.Events {
		out = append(out, ev.ID)
	}
	return out
}

// TimelineHas reports whether the room's timeline in resp holds event eid.
func TimelineHas(resp *mautrix.RespSync, roomID id.RoomID, eid id.EventID) bool {
	for _, x := range TimelineIDs(resp, roomID) {
		if x == eid {
			return true
		}
	}
	return false
}

// SendText sends a text message and returns its event ID.
func SendText(t testing.TB, c *mautrix.Client, roomID id.RoomID, body string) id.EventID {
	t.Helper()
	resp, err := c.SendText(ctx(t), roomID, body)
	if err != nil {
		t.Fatalf("%s sends %q: %v", c.UserID, body, err)
	}
	return resp.EventID
}

// History pages /messages backwards from the newest event to the start of
// the room and returns every event, oldest first. It fails on a repeated
// event (an overlap between pages) or a page loop.
func History(t testing.TB, c *mautrix.Client, roomID id.RoomID, from string, pageSize int) []*event.Event {
	t.Helper()
	var rev []*event.Event
	seen := map[id.EventID]bool{}
	for pages := 0; ; pages++ {
		if pages > 10000 {
			t.Fatal("History: too many pages")
		}
		resp, err := c.Messages(ctx(t), roomID, from, "", mautrix.DirectionBackward, nil, pageSize)
		if err != nil {
			t.Fatalf("/messages as %s from %q: %v", c.UserID, from, err)
		}
		for _, ev := range resp.Chunk {
			if seen[ev.ID] {
				t.Fatalf("/messages returned %s twice (page from %q)", ev.ID, from)
			}
			seen[ev.ID] = true
			rev = append(rev, ev)
		}
		if resp.End == "" || len(resp.Chunk) == 0 {
			break
		}
		if resp.End == from {
			t.Fatalf("/messages: end token %q equals from", from)
		}
		from = resp.End
	}
	out := make([]*event.Event, len(rev))
	for i, ev := range rev {
		out[len(rev)-1-i] = ev
	}
	return out
}

// eventIDs lists the IDs of events.
func eventIDs(evs []*event.Event) []id.EventID {
	out := make([]id.EventID, len(evs))
	for i, ev := range evs {
		out[i] = ev.ID
	}
	return out
}

// body is the body of a message event, or "".
func body(ev *event.Event) string {
	if ev == nil {
		return ""
	}
	s, _ := ev.Content.Raw["body"].(string)
	return s
}

// CreateRoom creates a room and fails the test on error.
func CreateRoom(t testing.TB, c *mautrix.Client, req *mautrix.ReqCreateRoom) id.RoomID {
	t.Helper()
	resp, err := c.CreateRoom(ctx(t), req)
	if err != nil {
		t.Fatalf("%s creates a room: %v", c.UserID, err)
	}
	return resp.RoomID
}

// Join joins c to roomID (which must let them in) and fails on error.
func Join(t testing.TB, c *mautrix.Client, roomID id.RoomID) {
	t.Helper()
	if _, err := c.JoinRoomByID(ctx(t), roomID); err != nil {
		t.Fatalf("%s joins %s: %v", c.UserID, roomID, err)
	}
}

// PublicRoom has owner create a public room and the others join it.
func PublicRoom(t testing.TB, owner *mautrix.Client, others ...*mautrix.Client) id.RoomID {
	t.Helper()
	roomID := CreateRoom(t, owner, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "e2e"})
	for _, c := range others {
		Join(t, c, roomID)
	}
	return roomID
}
