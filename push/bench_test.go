package push

import (
	"context"
	"fmt"
	"testing"

	"github.com/hearth-chat/hearth/internal/room"
)

// BenchmarkEvaluateRoom1000 measures push evaluation per event in a room
// of 1,000 joined local members (Issue 3 "Speed and size"): reading the
// event and the room's facts, running 999 members' rule sets with
// mautrix's evaluator, and storing the notification log and count
// changes, on a real bbolt file. Members join through the room engine
// directly: registering 1,000 accounts would measure bcrypt, not push.
// cmd/hearth-bench runs this benchmark for its "push" section.
func BenchmarkEvaluateRoom1000(b *testing.B) {
	e := openEnv(b, b.TempDir())
	defer e.db.Close()
	members := names("m", 999)
	roomID := e.publicRoom(b, user("owner"), members)
	s := New(e.db, e.rooms, Options{})
	from, _ := e.rooms.Pos()
	for i := range b.N {
		e.say(b, members[i%len(members)], roomID, fmt.Sprint(i), text(fmt.Sprintf("message %d for everyone", i)))
	}
	to, _ := e.rooms.Pos()
	b.ResetTimer()
	pos := from
	for pos < to {
		next, err := s.processBatch(context.Background(), pos, to)
		if err != nil {
			b.Fatal(err)
		}
		pos = next
	}
	b.StopTimer()
	n, err := s.Counts(user("owner"), roomID, nil)
	if err != nil || n.All.Notifications == 0 {
		b.Fatalf("no notifications were stored (%v)", err)
	}
}

// BenchmarkEvaluateRoom32 measures push per event in the one-room senders
// shape (Issue 15, "32 concurrent senders, one room"): 32 joined local
// members with the default rules, the events a mix of plain messages,
// user mentions, display-name mentions and notices. "store" is the
// evaluator's batches as the daemon runs them (read, evaluate, write the
// notification log on a real bbolt file); "rules" is the rules alone.
func BenchmarkEvaluateRoom32(b *testing.B) {
	e := openEnv(b, b.TempDir())
	defer e.db.Close()
	members := names("m", 31)
	roomID := e.publicRoom(b, user("owner"), members)
	const events = 4096
	from, _ := e.rooms.Pos()
	for i := range events {
		sender, other := members[i%len(members)], members[(i+1)%len(members)]
		content := text(fmt.Sprintf("message %d for everyone", i))
		switch i % 8 {
		case 3:
			content["m.mentions"] = map[string]any{"user_ids": []string{other}}
		case 5:
			content["body"] = "hello Dr " + other[1:4] + "ington, how are you"
		case 7:
			content["msgtype"] = "m.notice"
		}
		e.say(b, sender, roomID, fmt.Sprint(i), content)
	}
	to, _ := e.rooms.Pos()
	var pes []*room.PushEvent
	if err := e.rooms.PushEventsAfter(from, to, func(pe *room.PushEvent) error { pes = append(pes, pe); return nil }); err != nil {
		b.Fatal(err)
	}
	b.Run("rules", func(b *testing.B) {
		ev := NewEvaluator(NewRules(e.db), testServer)
		b.ReportAllocs()
		for i := range b.N {
			if _, err := ev.Evaluate(pes[i%len(pes)]); err != nil {
				b.Fatal(err)
			}
		}
	})
	// "commits of 4": the same, a write transaction per 4 events, the
	// shape of the daemon's evaluator following senders one commit at a
	// time (Issue 15, "One hot room: the notification log").
	b.Run("commits of 4", func(b *testing.B) {
		if b.N > events {
			b.Skipf("%d events are stored, %d asked", events, b.N)
		}
		s := New(e.db, e.rooms, Options{})
		b.ReportAllocs()
		for i := 0; i < b.N; i += 4 {
			var pos uint64 = from
			if i > 0 {
				pos = pes[i-1].Pos
			}
			if _, err := s.processBatch(context.Background(), pos, pes[min(i+4, b.N)-1].Pos); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("store", func(b *testing.B) {
		if b.N > events {
			b.Skipf("%d events are stored, %d asked", events, b.N)
		}
		s := New(e.db, e.rooms, Options{})
		b.ReportAllocs()
		pos, end := from, pes[b.N-1].Pos
		for pos < end {
			next, err := s.processBatch(context.Background(), pos, end)
			if err != nil {
				b.Fatal(err)
			}
			pos = next
		}
		b.StopTimer()
		n, err := s.Counts(user("owner"), roomID, nil)
		if err != nil || n.All.Notifications == 0 {
			b.Fatalf("no notifications were stored (%v)", err)
		}
	})
}
