package push

import (
	"context"
	"fmt"
	"testing"
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
