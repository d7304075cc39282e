package e2e

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// ack is one send the daemon answered with 200.
type ack struct {
	sender int // goroutine
	seq    int // its n-th send
	txn    string
	body   string
	id     id.EventID
}

// TestKill9Durability sends from 8 goroutines at once, kills the daemon
// with SIGKILL mid-stream, restarts it on the same data dir and checks that
// every send acknowledged with 200 survived: a 200 means the event is on
// disk. It repeats the kill at different moments, and ends with a SIGTERM
// under the same load, which must stop cleanly and lose nothing either.
func TestKill9Durability(t *testing.T) {
	t.Parallel()
	d := StartDaemon(t)
	alice := d.Register("alice")
	roomID := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "durability"})

	const senders = 8
	watcher := d.Login("alice")
	var all []ack
	rounds := []struct {
		killAfter time.Duration
		sigterm   bool // a clean stop under load instead of SIGKILL
	}{{400 * time.Millisecond, false}, {1200 * time.Millisecond, false}, {2 * time.Second, false}, {800 * time.Millisecond, true}}
	for iter, round := range rounds {
		killAfter := round.killAfter
		// Each goroutine has its own device (txn IDs are per device) and
		// sends until the daemon dies.
		clients := make([]*mautrix.Client, senders)
		for g := range clients {
			clients[g] = d.Login("alice")
		}
		var mu sync.Mutex
		var acks []ack
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for g := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := clients[g]
				for seq := 0; ; seq++ {
					select {
					case <-stop:
						return
					default:
					}
					txn := fmt.Sprintf("it%d-g%d-%d", iter, g, seq)
					b := "durable " + txn
					resp, err := c.SendMessageEvent(ctx(t), roomID, event.EventMessage,
						map[string]any{"msgtype": "m.text", "body": b}, mautrix.ReqSendEvent{TransactionID: txn})
					if err != nil {
						// Once the daemon is gone every send fails; only 200s count.
						continue
					}
					mu.Lock()
					acks = append(acks, ack{g, seq, txn, b, resp.EventID})
					mu.Unlock()
				}
			}()
		}
		time.Sleep(killAfter / 2) // not an assertion: it only varies the moment of the kill
		// A sync token handed out mid-stream must still be valid after the
		// kill: the daemon may only hand out durable positions.
		midTok := Sync(t, watcher, "", `{"room":{"timeline":{"limit":1}}}`, 0).NextBatch
		time.Sleep(killAfter / 2)
		if round.sigterm {
			if err := d.Stop(); err != nil {
				t.Errorf("iteration %d: SIGTERM during concurrent sends: %v (want exit status 0)", iter, err)
			}
		} else {
			d.Kill9()
		}
		close(stop)
		wg.Wait()
		t.Logf("iteration %d: %d sends acknowledged before the stop (SIGTERM %v) after %v", iter, len(acks), round.sigterm, killAfter)
		if len(acks) == 0 {
			t.Fatalf("iteration %d: no send was acknowledged in %v", iter, killAfter)
		}
		all = append(all, acks...)

		d.Start() // opens the file left by the kill

		if _, err := watcher.FullSyncRequest(ctx(t), mautrix.ReqSync{Since: midTok}); err != nil {
			t.Fatalf("iteration %d: sync from a token handed out before SIGKILL: %v", iter, err)
		}

		// Every event acknowledged in this round is there, with its content
		// (earlier rounds' events are checked again through /messages below).
		reader := d.Login("alice")
		checkEvents(t, reader, roomID, acks, fmt.Sprintf("iteration %d", iter))

		// And in /messages, once each, each goroutine's sends in the order
		// they were made (each waited for the previous 200).
		history := History(t, reader, roomID, "", 500)
		pos := map[id.EventID]int{}
		for i, ev := range history {
			pos[ev.ID] = i
		}
		for _, a := range all {
			if _, ok := pos[a.id]; !ok {
				t.Fatalf("iteration %d: acknowledged event %s (txn %s) missing from /messages", iter, a.id, a.txn)
			}
		}
		checkSenderOrder(t, all, pos)

		// The txn mapping is as durable as the event: resending the last
		// acknowledged txn of each device gives the same event, not a new one.
		lastOf := map[int]ack{}
		for _, a := range acks {
			if cur, ok := lastOf[a.sender]; !ok || a.seq > cur.seq {
				lastOf[a.sender] = a
			}
		}
		for g, a := range lastOf {
			resp, err := clients[g].SendMessageEvent(ctx(t), roomID, event.EventMessage,
				map[string]any{"msgtype": "m.text", "body": a.body}, mautrix.ReqSendEvent{TransactionID: a.txn})
			if err != nil {
				t.Fatalf("iteration %d: resending txn %s after restart: %v", iter, a.txn, err)
			}
			if resp.EventID != a.id {
				t.Fatalf("iteration %d: resending txn %s after SIGKILL gave %s, want the acknowledged %s", iter, a.txn, resp.EventID, a.id)
			}
		}

		// New sends work.
		SendText(t, reader, roomID, fmt.Sprintf("after kill %d", iter))
	}

	// The file is still healthy for a clean stop and start.
	d.Restart()
	reader := d.Login("alice")
	if got := len(History(t, reader, roomID, "", 1000)); got < len(all) {
		t.Fatalf("after a clean restart /messages has %d events, want at least %d", got, len(all))
	}
	status, _ := Raw(t, reader, http.MethodGet, "/_matrix/client/v3/joined_rooms", nil)
	if status != http.StatusOK {
		t.Fatalf("joined_rooms after restarts: %d", status)
	}
}

// checkSenderOrder fails if some goroutine's acknowledged sends appear in
// /messages out of the order they were made.
func checkSenderOrder(t *testing.T, all []ack, pos map[id.EventID]int) {
	t.Helper()
	// all holds each goroutine's acks in the order they came back, which
	// is the order they were sent; compare consecutive acks of the same
	// (iteration, goroutine), named by the txn ID without its counter.
	lastPos := map[string]int{}
	lastID := map[string]ack{}
	for _, a := range all {
		k := a.txn[:len(a.txn)-len(fmt.Sprint(a.seq))]
		if p, ok := lastPos[k]; ok && pos[a.id] < p {
			t.Fatalf("txn %s (event %s) appears before txn %s (event %s) in /messages", a.txn, a.id, lastID[k].txn, lastID[k].id)
		}
		lastPos[k] = pos[a.id]
		lastID[k] = a
	}
}

// checkEvents fetches every acknowledged event with GET /event, four at a
// time, and fails if one is missing or has the wrong body.
func checkEvents(t *testing.T, c *mautrix.Client, roomID id.RoomID, acks []ack, what string) {
	t.Helper()
	work := make(chan ack)
	errs := make(chan string, len(acks))
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := range work {
				ev, err := c.GetEvent(ctx(t), roomID, a.id)
				switch {
				case err != nil:
					errs <- fmt.Sprintf("%s: acknowledged event %s (txn %s) lost after SIGKILL: %v", what, a.id, a.txn, err)
				case body(ev) != a.body:
					errs <- fmt.Sprintf("%s: event %s has body %q, want %q", what, a.id, body(ev), a.body)
				}
			}
		}()
	}
	for _, a := range acks {
		work <- a
	}
	close(work)
	wg.Wait()
	close(errs)
	n := 0
	for e := range errs {
		if n < 10 {
			t.Error(e)
		}
		n++
	}
	if n > 0 {
		t.Fatalf("%s: %d of %d acknowledged events missing or wrong", what, n, len(acks))
	}
}
