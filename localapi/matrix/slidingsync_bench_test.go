package matrix_test

import (
	"fmt"
	"testing"
)

// BenchmarkSlidingSyncFirstWindow: a new connection's first window of 20
// rooms with timeline_limit 1, for an account in 1,000 rooms (the issue's
// bench case; `make bench` measures it against a real daemon).
func BenchmarkSlidingSyncFirstWindow(b *testing.B) {
	ts := newTestServer(b)
	alice := ts.register(b, "alice")
	for i := 0; i < 1000; i++ {
		id := ts.createRoom(b, alice, map[string]any{"name": fmt.Sprint("room ", i)})
		ts.send(b, alice, id, "m", "hello")
	}
	body := map[string]any{"lists": map[string]any{"all": map[string]any{"ranges": [][2]int{{0, 19}}, "timeline_limit": 1,
		"required_state": [][]string{{"m.room.member", "$LAZY"}, {"m.room.member", "$ME"}, {"m.room.name", ""},
			{"m.room.avatar", ""}, {"m.room.encryption", ""}, {"m.room.create", ""}, {"m.room.power_levels", ""}}}}}
	b.ResetTimer()
	for b.Loop() {
		r := ts.ss(b, alice, "", -1, body)
		if r.Status != 200 {
			b.Fatal(r.Status)
		}
	}
}
