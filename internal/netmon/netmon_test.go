package netmon

import (
	"sync"
	"testing"
	"time"
)

// fakeSystem stands in for the interfaces and the sleep clock, and tells
// the test each time the loop reads the interfaces, so the test knows a
// check ran without waiting for it.
type fakeSystem struct {
	mu     sync.Mutex
	net    string
	asleep time.Duration
	reads  chan struct{}
}

func (s *fakeSystem) set(f func()) {
	s.mu.Lock()
	f()
	s.mu.Unlock()
}

// startLoop runs the monitor's loop on sys with the given watcher and
// returns once the loop read the state it starts from.
func startLoop(t *testing.T, sys *fakeSystem, w watcher, subs ...chan Change) {
	t.Helper()
	quit, done := make(chan struct{}), make(chan struct{})
	var asleep time.Duration // read with the interfaces, so the test may change sys after the read
	m := &Monitor{subs: subs,
		readNet: func() string {
			sys.mu.Lock()
			n := sys.net
			asleep = sys.asleep
			sys.mu.Unlock()
			select {
			case sys.reads <- struct{}{}:
			case <-quit:
			}
			return n
		},
		asleep: func() time.Duration { return asleep }}
	go func() {
		defer close(done)
		m.run(w, quit, nil)
	}()
	t.Cleanup(func() { close(quit); <-done })
	<-sys.reads
}

// checkOnce sends one event and waits until the loop read the
// interfaces for it; the loop reads the clock and delivers right after.
func checkOnce(events chan<- struct{}, sys *fakeSystem) {
	events <- struct{}{}
	<-sys.reads
}

func receive(t *testing.T, ch <-chan Change) Change {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no change delivered")
		return Change{}
	}
}

// TestChangeOnlyWhenSomethingChanged: an event that changes neither the
// interfaces nor the time asleep tells no one; new addresses say
// "network changed", a jump of the sleep clock "woke from sleep" (a
// second's drift does not), and a subscriber that has not read yet gets
// everything merged into one Change. These are the two signs the
// daemon's 30 s network watch used to compare on its tick
// (daemon TestNetworkChange), now read only when the system says
// something happened.
func TestChangeOnlyWhenSomethingChanged(t *testing.T) {
	sys := &fakeSystem{net: "1 eth0 up|broadcast|multicast [10.0.0.2/24]", reads: make(chan struct{})}
	fast, slow := make(chan Change, 1), make(chan Change, 1)
	events := make(chan struct{}, 1)
	startLoop(t, sys, watcher{events: events}, fast, slow)

	checkOnce(events, sys) // a netlink message that changed nothing we see
	sys.set(func() { sys.asleep += time.Second })
	checkOnce(events, sys) // a second of drift is not a sleep
	sys.set(func() { sys.net = "1 eth0 up|broadcast|multicast [192.168.1.7/24]" })
	checkOnce(events, sys)
	if c := receive(t, fast); c != (Change{Network: true}) || c.String() != "network changed" {
		t.Fatalf("after new addresses: %+v %q (the events before changed nothing)", c, c)
	}
	sys.set(func() { sys.asleep += 8 * time.Hour })
	checkOnce(events, sys)
	if c := receive(t, fast); c != (Change{Slept: true}) || c.String() != "woke from sleep" {
		t.Fatalf("after a night asleep: %+v %q", c, c)
	}
	if c := receive(t, slow); c != (Change{Network: true, Slept: true}) {
		t.Fatalf("the subscriber that did not read: %+v, want both merged", c)
	}
}

// TestPollWithoutEvents: where the system does not tell (no netlink), the
// loop compares on its own every poll.
func TestPollWithoutEvents(t *testing.T) {
	sys := &fakeSystem{net: "a", reads: make(chan struct{})}
	sub := make(chan Change, 1)
	startLoop(t, sys, watcher{poll: time.Millisecond}, sub)
	sys.set(func() { sys.net = "b" })
	<-sys.reads
	if c := receive(t, sub); c != (Change{Network: true}) {
		t.Fatalf("poll: %+v", c)
	}
}
