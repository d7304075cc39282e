package matrix_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/internal/e2ee"
)

// BenchmarkSyncDelivery is hearth-bench's delivery section in process, for
// profiling (`-cpuprofile`): 50 long polls in one room, and with others>0
// as many more users long-polling rooms of their own. One op is one
// message sent and received by every poller in its room.
func BenchmarkSyncDelivery(b *testing.B) {
	for _, others := range []int{0, 50} {
		b.Run(fmt.Sprintf("in-room=50/elsewhere=%d", others), func(b *testing.B) { benchDelivery(b, 50, others) })
	}
}

func benchDelivery(b *testing.B, members, others int) {
	// Wired as daemon.Start wires them: unread counts and E2EE sections
	// are part of every response the daemon builds.
	ts := newPushServer(b)
	ts.API.SetKeys(e2ee.New(ts.DB, testServerName))
	// One kept-alive connection per poller, as real clients have, rather
	// than a new one per request past the default two idle ones.
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * (members + others + 1)}}
	defer client.CloseIdleConnections()
	sender := ts.register(b, "sender")
	roomID := ts.createRoom(b, sender, map[string]any{"preset": "public_chat"})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	got := make(chan struct{}, members)
	poll := func(u *testUser, room string, report bool) {
		since := ts.do(b, "GET", covV3+"/sync?timeout=0", u.Token, nil).str(b, "next_batch")
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				req := ts.newRequest(b, "GET", covV3+"/sync?timeout=30000&since="+url.QueryEscape(since), u.Token, nil)
				res, err := client.Do(req.WithContext(ctx))
				if err != nil {
					return
				}
				var body struct {
					NextBatch string `json:"next_batch"`
					Rooms     struct {
						Join map[string]struct {
							Timeline struct {
								Events []struct {
									Type string `json:"type"`
								} `json:"events"`
							} `json:"timeline"`
						} `json:"join"`
					} `json:"rooms"`
				}
				err = json.NewDecoder(res.Body).Decode(&body)
				res.Body.Close()
				if err != nil || res.StatusCode != http.StatusOK {
					return
				}
				since = body.NextBatch
				if report {
					for _, ev := range body.Rooms.Join[room].Timeline.Events {
						if ev.Type == "m.room.message" {
							got <- struct{}{}
						}
					}
				}
			}
		}()
	}
	for i := range members {
		u := ts.register(b, fmt.Sprintf("member%d", i))
		ts.do(b, "POST", covV3+"/join/"+url.PathEscape(roomID), u.Token, map[string]any{}).wantStatus(b, 200)
		poll(u, roomID, true)
	}
	for i := range others {
		u := ts.register(b, fmt.Sprintf("other%d", i))
		poll(u, ts.createRoom(b, u, nil), false)
	}
	b.ResetTimer()
	cpu := cpuTime()
	for i := 0; i < b.N; i++ {
		ts.send(b, sender, roomID, fmt.Sprintf("t%d", i), "hello")
		for range members {
			<-got
		}
	}
	// Wall time per op follows the machine's load and its fsyncs; the
	// process's CPU time per op is the steadier figure.
	b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIncrementalSync is one woken long poll's build alone: bob's
// incremental /sync over a span holding one message, with push and E2EE
// wired as the daemon wires them, on one goroutine (no scheduling of 50
// pollers in the figure). Every op asks about the same span. With quiet=N
// bob is also in N rooms with nothing new, as an account with many rooms
// is.
func BenchmarkIncrementalSync(b *testing.B) {
	for _, quiet := range []int{0, 300} {
		b.Run(fmt.Sprintf("quiet=%d", quiet), func(b *testing.B) { benchIncrementalSync(b, quiet) })
	}
}

func benchIncrementalSync(b *testing.B, quiet int) {
	ts := newPushServer(b)
	ts.API.SetKeys(e2ee.New(ts.DB, testServerName))
	alice, bob := ts.register(b, "alice"), ts.register(b, "bob")
	roomID := ts.createRoom(b, alice, map[string]any{"preset": "public_chat"})
	ts.do(b, "POST", covV3+"/join/"+url.PathEscape(roomID), bob.Token, map[string]any{}).wantStatus(b, 200)
	for range quiet {
		ts.createRoom(b, bob, map[string]any{"preset": "public_chat"})
	}
	since := ts.do(b, "GET", covV3+"/sync?timeout=0", bob.Token, nil).str(b, "next_batch")
	ts.send(b, alice, roomID, "t", "hello")
	pos, _ := ts.Rooms.Pos()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts.Push.WaitEvaluated(ctx, pos); err != nil {
		b.Fatal(err)
	}
	path := covV3 + "/sync?timeout=0&since=" + url.QueryEscape(since)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	for i := 0; i < b.N; i++ {
		ts.do(b, "GET", path, bob.Token, nil)
	}
	b.ReportMetric(float64((cpuTime()-cpu).Nanoseconds())/1000/float64(b.N), "cpu-µs/op")
}
