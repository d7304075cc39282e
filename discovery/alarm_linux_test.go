package discovery

import (
	"encoding/binary"
	"testing"
	"time"
)

// TestAlarmFires: the alarm's timerfd, in the runtime's poller, becomes
// readable when armed, for the latest time it was set to; disarmed, it
// stays quiet.
func TestAlarmFires(t *testing.T) {
	a := newAlarm()
	if a == nil {
		t.Fatal("no timerfd")
	}
	defer a.close()
	read := func(limit time.Duration) (uint64, error) {
		a.f.SetReadDeadline(time.Now().Add(limit))
		var b [8]byte
		if _, err := a.f.Read(b[:]); err != nil {
			return 0, err
		}
		return binary.NativeEndian.Uint64(b[:]), nil
	}
	a.set(time.Now().Add(time.Hour))
	a.set(time.Now().Add(20 * time.Millisecond)) // re-armed sooner
	if n, err := read(5 * time.Second); err != nil || n != 1 {
		t.Fatalf("armed for 20 ms: %d expirations, %v", n, err)
	}
	a.set(time.Now().Add(20 * time.Millisecond))
	a.set(time.Time{})
	if n, err := read(200 * time.Millisecond); err == nil {
		t.Fatalf("disarmed, yet it fired (%d)", n)
	}
}

// TestAlarmWatch: a watched alarm calls back each time it goes off (the
// run goroutine's timer then, with no read deadline on the socket, so no
// runtime timer wakes the runtime's monitor thread), and not when
// disarmed before its time; once its watch ends, set says so (the run
// goroutine then sets a read deadline) and the watch calls back once
// more, to wake a run goroutine waiting with no deadline.
func TestAlarmWatch(t *testing.T) {
	a := newAlarm()
	if a == nil {
		t.Fatal("no timerfd")
	}
	if a.set(time.Time{}) {
		t.Fatal("set reports an alarm nobody watches as the timer")
	}
	fired := make(chan struct{}, 4)
	a.watch(func() { fired <- struct{}{} })
	wait := func(limit time.Duration) bool {
		select {
		case <-fired:
			return true
		case <-time.After(limit):
			return false
		}
	}
	for i := 0; i < 2; i++ {
		if !a.set(time.Now().Add(20 * time.Millisecond)) {
			t.Fatalf("armed (%d): set reports no alarm", i)
		}
		if !wait(5 * time.Second) {
			t.Fatalf("armed (%d): no call", i)
		}
	}
	a.set(time.Now().Add(50 * time.Millisecond))
	a.set(time.Time{})
	if wait(300 * time.Millisecond) {
		t.Fatal("disarmed, yet it called")
	}
	a.close()
	if !wait(5 * time.Second) {
		t.Fatal("the watch ended without a last call")
	}
	if a.set(time.Now().Add(time.Second)) {
		t.Fatal("closed, yet set reports the alarm as the timer")
	}
}
