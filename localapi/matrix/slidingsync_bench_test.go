package matrix_test

import (
	"fmt"
	"testing"
	"time"
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

// BenchmarkSlidingSyncWake: a long-polling connection of an account in
// 1,000 rooms, woken by a message in one of them: the time from the send
// to the response (the send→response case).
func BenchmarkSlidingSyncWake(b *testing.B) {
	ts := newTestServer(b)
	alice := ts.register(b, "alice")
	var last string
	for i := 0; i < 1000; i++ {
		last = ts.createRoom(b, alice, nil)
	}
	body := map[string]any{"lists": map[string]any{"all": map[string]any{"ranges": [][2]int{{0, 19}}, "timeline_limit": 1,
		"required_state": [][]string{{"m.room.member", "$LAZY"}}}}}
	pos := ts.ssOK(b, alice, "", -1, body).Pos
	var sendDur, waitDur time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		done := make(chan ssResp, 1)
		go func() { done <- ts.ssOK(b, alice, pos, 30000, body) }()
		t0 := time.Now()
		ts.send(b, alice, last, fmt.Sprint("w", i), "wake")
		t1 := time.Now()
		r := <-done
		sendDur, waitDur = sendDur+t1.Sub(t0), waitDur+time.Since(t1)
		if len(r.Rooms) == 0 {
			r = ts.ssOK(b, alice, r.Pos, 30000, body)
		}
		pos = r.Pos
	}
	b.ReportMetric(float64(sendDur.Microseconds())/float64(b.N), "send-µs/op")
	b.ReportMetric(float64(waitDur.Microseconds())/float64(b.N), "after-send-µs/op")
}
