package matrix

import (
	"context"
	"testing"
	"time"
)

// TestPollDeadlinesShareSlots: long polls whose deadlines fall in one
// slot share its timer and channel, those in different slots do not, and
// none is woken later than its timeout asks.
func TestPollDeadlinesShareSlots(t *testing.T) {
	var d pollDeadlines
	const timeout = 30 * time.Second
	byDeadline := map[time.Time]<-chan struct{}{}
	channels := map[<-chan struct{}]bool{}
	for range 5 {
		before := time.Now()
		p := d.start(context.Background(), timeout)
		after := time.Now()
		if p.deadline.After(after.Add(timeout)) || !p.deadline.After(before.Add(timeout-pollSlot)) {
			t.Errorf("deadline %v for a poll started between %v and %v with timeout %v", p.deadline, before, after, timeout)
		}
		if ch, ok := byDeadline[p.deadline]; ok && ch != p.expired {
			t.Errorf("two polls due at %v got different timers", p.deadline)
		} else if !ok && channels[p.expired] {
			t.Errorf("polls due at different times share a timer")
		}
		byDeadline[p.deadline], channels[p.expired] = p.expired, true
		p.stop()
	}
}

// TestPollDeadlineExpires: a poll's channel closes once its timeout has
// passed, for a slot (and its slot is forgotten) as for a short timeout.
func TestPollDeadlineExpires(t *testing.T) {
	var d pollDeadlines
	for _, timeout := range []time.Duration{50 * time.Millisecond, pollExactFrom} {
		p := d.start(context.Background(), timeout)
		select {
		case <-p.expired:
		case <-time.After(timeout + 10*time.Second):
			t.Fatalf("a poll with timeout %v did not expire", timeout)
		}
		p.stop()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.slots) != 0 {
		t.Errorf("%d slots left after their polls expired", len(d.slots))
	}
}
