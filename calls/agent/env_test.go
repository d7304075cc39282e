package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/store"
)

const testServer = "calls.test"

var testKey = func() ed25519.PrivateKey { _, k, _ := ed25519.GenerateKey(rand.Reader); return k }()

func user(name string) string { return "@" + name + ":" + testServer }

// env is a real bbolt file with the room engine over it, wired as the
// daemon wires them, and an agent following it.
type env struct {
	t     *testing.T
	db    *store.DB
	rooms *room.Engine
	agent *Agent
}

var (
	echo  = Party{UserID: user("echo"), DeviceID: "ECHODEV"}
	owner = Party{UserID: user("owner"), DeviceID: "VOICEMAIL"}
)

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	st, err := room.Open(room.Options{Path: filepath.Join(t.TempDir(), "hearth.db"),
		Engine: room.Config{ServerName: testServer, KeyID: "ed25519:t", PrivateKey: testKey}})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, db: st.DB, rooms: st.Engine}
	if cfg.Echo.UserID == "" {
		cfg.Echo = echo
	}
	cfg.HostIP = func(ip net.IP) bool { return ip.IsLoopback() }
	e.agent = New(e.rooms, nil, cfg)
	t.Cleanup(func() {
		e.agent.Stop()
		e.db.Close()
	})
	return e
}

// room creates a private room of creator with the others joined.
func (e *env) room(creator string, others ...string) string {
	e.t.Helper()
	ctx := context.Background()
	roomID, err := e.rooms.CreateRoom(ctx, creator, room.Profile{DisplayName: "Anna"}, room.CreateRequest{Preset: "public_chat"})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, o := range others {
		if _, err := e.rooms.ChangeMembership(ctx, room.MembershipRequest{Sender: o, Target: o, RoomID: roomID, Membership: "join"}); err != nil {
			e.t.Fatal(err)
		}
	}
	return roomID
}

func (e *env) send(sender, roomID, typ string, content map[string]any) {
	e.t.Helper()
	raw, _ := json.Marshal(content)
	if _, err := e.rooms.Send(context.Background(), room.SendRequest{Sender: sender, Device: "D", RoomID: roomID,
		Type: typ, Content: raw, TxnID: rand.Text()}); err != nil {
		e.t.Fatal(err)
	}
}

// waitFor returns the first event after *pos matching pred, moving *pos
// past it; it fails the test when none comes within d.
func (e *env) waitFor(pos *uint64, d time.Duration, what string, pred func(*room.ClientEvent) bool) *room.ClientEvent {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		cur, eph := e.rooms.Pos()
		var found *room.ClientEvent
		e.rooms.PushEventsAfter(*pos, cur, func(pe *room.PushEvent) error {
			if found == nil && pred(&pe.Event) {
				ev := pe.Event
				found = &ev
				*pos = pe.Pos
			}
			return nil
		})
		if found != nil {
			return found
		}
		*pos = cur
		if err := e.rooms.Wait(ctx, cur, eph); err != nil {
			e.t.Fatalf("no %s within %v", what, d)
		}
	}
}

func callEvent(typ, callID string) func(*room.ClientEvent) bool {
	return func(ev *room.ClientEvent) bool {
		if ev.Type != typ {
			return false
		}
		c, err := parseCall(ev.Content)
		return err == nil && c.CallID == callID
	}
}

// settle waits until the agent has no call and the goroutines are back to
// at most base: everything a call made is gone.
func settle(t *testing.T, a *Agent, base int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for a.Active() != 0 || runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("calls left behind: %d active, %d goroutines (base %d)\n%s", a.Active(), runtime.NumGoroutine(), base,
				buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testAPI is the caller's pion, host candidates on loopback only.
func testAPI() *webrtc.API { return newAPI(func(ip net.IP) bool { return ip.IsLoopback() }) }

// handled waits until the agent has followed the stream to where it is
// now: every event sent so far was seen.
func (e *env) handled() {
	e.t.Helper()
	pos, _ := e.rooms.Pos()
	deadline := time.Now().Add(10 * time.Second)
	for e.agent.followed.Load() < pos {
		if time.Now().After(deadline) {
			e.t.Fatalf("agent did not reach position %d", pos)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
