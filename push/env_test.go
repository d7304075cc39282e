package push

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/store"
)

const testServer = "push.test"

// env is a real bbolt file with the room engine over it, wired as the
// daemon wires them (the commit hook advances the notifier).
type env struct {
	db    *store.DB
	rooms *room.Engine
}

var testKey = func() ed25519.PrivateKey { _, k, _ := ed25519.GenerateKey(rand.Reader); return k }()

func openEnv(tb testing.TB, dir string) *env {
	tb.Helper()
	st, err := room.Open(room.Options{Path: filepath.Join(dir, "hearth.db"),
		Engine: room.Config{ServerName: testServer, KeyID: "ed25519:t", PrivateKey: testKey}})
	if err != nil {
		tb.Fatal(err)
	}
	return &env{db: st.DB, rooms: st.Engine}
}

func user(name string) string { return "@" + name + ":" + testServer }

// publicRoom creates a public room owned by creator and joins members to
// it, concurrently so that joins share commits.
func (e *env) publicRoom(tb testing.TB, creator string, members []string) string {
	tb.Helper()
	ctx := context.Background()
	roomID, err := e.rooms.CreateRoom(ctx, creator, room.Profile{}, room.CreateRequest{Preset: "public_chat"})
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(members))
	work := make(chan string)
	for range 32 {
		wg.Go(func() {
			for m := range work {
				_, err := e.rooms.ChangeMembership(ctx, room.MembershipRequest{Sender: m, Target: m, RoomID: roomID,
					Membership: "join", Profile: room.Profile{DisplayName: "Dr " + m[1:4] + "ington"}})
				if err != nil {
					errs <- err
				}
			}
		})
	}
	for _, m := range members {
		work <- m
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
	return roomID
}

func (e *env) say(tb testing.TB, sender, roomID, txn string, content map[string]any) string {
	tb.Helper()
	b, _ := json.Marshal(content)
	id, err := e.rooms.Send(context.Background(), room.SendRequest{Sender: sender, Device: "D", RoomID: roomID,
		Type: "m.room.message", Content: b, TxnID: txn})
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

func text(body string) map[string]any { return map[string]any{"msgtype": "m.text", "body": body} }

func (e *env) settle(tb testing.TB, s *Service) {
	tb.Helper()
	pos, _ := e.rooms.Pos()
	if err := s.WaitEvaluated(context.Background(), pos); err != nil {
		tb.Fatal(err)
	}
}

func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = user(fmt.Sprintf("%s%04d", prefix, i))
	}
	return out
}

// liveNotifications is the notification count /sync shows userID in
// roomID at pos: the stored log and the published results (Live, Counts).
func liveNotifications(tb testing.TB, s *Service, userID, roomID string, pos uint64) int {
	tb.Helper()
	live, err := s.Live(context.Background(), userID, pos)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := s.Counts(userID, roomID, live)
	if err != nil {
		tb.Fatal(err)
	}
	return c.All.Notifications
}
