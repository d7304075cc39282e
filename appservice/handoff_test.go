package appservice

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
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
