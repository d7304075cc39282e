package appservice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/internal/room"
)

// TestQueueHandoffKeepsGuarantees: messages go to a keeping-up
// appservice straight from the follower (handoff.go) while ephemeral
// events are queued for it at the same time and the appservice fails
// for a while: every message arrives once and in order, and every
// ephemeral event once — none deleted unsent by a hand-off's
// acknowledgement, none sent twice.
func TestQueueHandoffKeepsGuarantees(t *testing.T) {
	w := setupQueueWorld(t, nil)
	w.settle(t)
	const n = 60
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range n {
			if i == n/3 {
				w.as.setMode("fail")
			}
			if i == n/2 {
				w.as.setMode("ok")
			}
			w.say(t, fmt.Sprint("h", i))
		}
	}()
	go func() {
		defer wg.Done()
		for i := range n {
			err := w.q.QueueEphemeral(context.Background(), w.roomID, []string{"@br_ghost:" + qServer},
				map[string]any{"type": "m.typing", "room_id": w.roomID, "content": map[string]any{"user_ids": []string{}}})
			if err != nil {
				t.Error(err)
			}
			time.Sleep(time.Duration(i%3) * time.Millisecond)
		}
	}()
	wg.Wait()
	var want []string
	for i := range n {
		want = append(want, fmt.Sprint("h", i))
	}
	w.as.waitFor(t, "everything delivered", func() bool {
		return w.reg.Health("br").Queued == 0 && strings.Count(w.as.ephemeralSeen(), "m.typing") >= n &&
			strings.HasSuffix(texts(w.as.delivered()), want[n-1])
	})
	if got := texts(w.as.delivered()); got != strings.Join(want, "|") {
		t.Fatalf("messages delivered:\n%s\nwant\n%s", got, strings.Join(want, "|"))
	}
	if c := strings.Count(w.as.ephemeralSeen(), "m.typing"); c != n {
		t.Fatalf("%d typing events delivered, want %d", c, n)
	}
	// Transaction IDs are never reused for other contents.
	w.as.mu.Lock()
	defer w.as.mu.Unlock()
	byID := map[string]string{}
	for _, s := range w.as.seen {
		c := strings.Join(s.Bodies, ",") + "/" + strings.Join(s.Ephemeral, ",")
		if prev, ok := byID[s.ID]; ok && prev != c {
			t.Fatalf("transaction %s sent with %q and %q", s.ID, prev, c)
		}
		byID[s.ID] = c
	}
}

// TestQueueHandoffWriteFails: the follower's write of handed-off events
// fails after the appservice acknowledged them, and a new message comes
// before the follower tries again: the next transaction, carrying both,
// goes under a new ID (the appservice drops a repeated one unread), so
// no transaction ID is sent with two contents and nothing is lost.
func TestQueueHandoffWriteFails(t *testing.T) {
	var w *queueWorld
	var armed, failed atomic.Bool
	w = setupQueueWorld(t, func(q *Queue) {
		q.beforeWrite = func() error {
			if !armed.Load() || failed.Load() || !w.handingOff() {
				return nil
			}
			failed.Store(true)
			// The hand-off of "a" is sent and acknowledged first.
			for !slices.Contains(w.as.delivered(), "a") {
				time.Sleep(5 * time.Millisecond)
			}
			if _, err := w.rooms.Send(context.Background(), room.SendRequest{Sender: alice, Device: "D", RoomID: w.roomID,
				Type: "m.room.message", Content: json.RawMessage(`{"msgtype":"m.text","body":"b"}`), TxnID: "b"}); err != nil {
				t.Error(err)
			}
			return errors.New("disk full")
		}
	})
	w.settle(t)
	w.idle(t)
	armed.Store(true)
	w.say(t, "a")
	w.as.waitFor(t, "b delivered", func() bool { return strings.HasSuffix(texts(w.as.delivered()), "b") })
	if !failed.Load() {
		t.Fatal("the follower's write never failed")
	}
	w.as.mu.Lock()
	byID := map[string]string{}
	for _, s := range w.as.seen {
		c := strings.Join(s.Bodies, ",")
		if prev, ok := byID[s.ID]; ok && prev != c {
			t.Errorf("transaction %s sent with %q and %q", s.ID, prev, c)
		}
		byID[s.ID] = c
	}
	w.as.mu.Unlock()
	if got := texts(w.as.delivered()); got != "a|a|b" && got != "a|b" {
		t.Fatalf("delivered %q", got)
	}
}

// TestQueueHandoffReadded: the appservice is removed and added again
// while a hand-off of an earlier message waits for the follower's write:
// the new registration gets nothing from before it, neither the handed-
// off events nor their queue entries, and what comes after arrives.
func TestQueueHandoffReadded(t *testing.T) {
	var w *queueWorld
	var armed, done, readded atomic.Bool
	y := strings.Replace(regYAML("br", "br", true), "http://127.0.0.1:29318", "AS_URL", 1)
	w = setupQueueWorld(t, func(q *Queue) {
		q.beforeWrite = func() error {
			if !armed.Load() || done.Swap(true) {
				return nil
			}
			if err := w.reg.Remove(context.Background(), "br"); err != nil {
				t.Error(err)
			}
			time.Sleep(2 * time.Millisecond) // a new AddedTS: the new registration's txn IDs differ
			reg, err := Parse([]byte(strings.Replace(y, "AS_URL", w.as.URL, 1)))
			if err == nil {
				err = w.reg.Add(context.Background(), reg)
			}
			if err != nil {
				t.Error(err)
			}
			readded.Store(true)
			return nil
		}
	})
	w.settle(t)
	w.idle(t)
	armed.Store(true)
	w.say(t, "old")
	for !readded.Load() {
		time.Sleep(5 * time.Millisecond)
	}
	prefix := fmt.Sprint(w.reg.Get("br").AddedTS, ".")
	w.say(t, "new")
	w.as.waitFor(t, "new delivered", func() bool { return strings.HasSuffix(texts(w.as.delivered()), "new") })
	w.as.mu.Lock()
	defer w.as.mu.Unlock()
	for _, s := range w.as.seen {
		if strings.HasPrefix(s.ID, prefix) && slices.Contains(s.Bodies, "old") {
			t.Fatalf("the new registration was sent %q (txn %s), from before it", s.Bodies, s.ID)
		}
	}
}

// idle waits until the worker of "br" has finished with its last hand-off,
// so that the next message is handed off.
func (w *queueWorld) idle(t *testing.T) {
	t.Helper()
	w.as.waitFor(t, "the last hand-off over", func() bool {
		w.q.mu.Lock()
		defer w.q.mu.Unlock()
		return w.q.handoffs["br"] == nil && w.q.writing["br"] == 0 && w.q.counts["br"] == 0
	})
}

// handingOff reports whether a hand-off to "br" waits for its write.
func (w *queueWorld) handingOff() bool {
	w.q.mu.Lock()
	defer w.q.mu.Unlock()
	return w.q.handoffs["br"] != nil
}
