package matrix

import (
	"testing"
	"time"
)

// TestAggregatePresence: a user's presence is the most present state among
// their devices that still count (Client-Server API §"Presence"); a device
// stops counting deviceTimeout after its last request ended, but never
// while a request (a long poll) is in flight.
func TestAggregatePresence(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	cases := []struct {
		name     string
		devices  map[string]*devicePresence
		want     string
		wantNext time.Time
		left     int // devices still tracked afterwards
	}{
		{"no devices", map[string]*devicePresence{}, "offline", time.Time{}, 0},
		{"online beats idle", map[string]*devicePresence{
			"A": {state: "online", seen: ago(time.Second)},
			"B": {state: "unavailable", seen: ago(2 * time.Second)},
		}, "online", ago(2 * time.Second).Add(deviceTimeout), 2},
		{"idle beats offline", map[string]*devicePresence{
			"A": {state: "offline", inFlight: 1, seen: ago(time.Hour)},
			"B": {state: "unavailable", inFlight: 1, seen: ago(time.Hour)},
		}, "unavailable", time.Time{}, 2},
		{"a device that stopped syncing stops counting", map[string]*devicePresence{
			"A": {state: "online", seen: ago(deviceTimeout)},
			"B": {state: "unavailable", seen: ago(time.Second)},
		}, "unavailable", ago(time.Second).Add(deviceTimeout), 1},
		{"a long poll in flight keeps counting", map[string]*devicePresence{
			"A": {state: "online", inFlight: 1, seen: ago(5 * time.Minute)},
			"B": {state: "unavailable", seen: ago(time.Second)},
		}, "online", ago(time.Second).Add(deviceTimeout), 2},
		{"every device gone", map[string]*devicePresence{
			"A": {state: "online", seen: ago(time.Minute)},
		}, "offline", time.Time{}, 0},
	}
	for _, tc := range cases {
		state, next := aggregatePresence(tc.devices, now, deviceTimeout)
		if state != tc.want || !next.Equal(tc.wantNext) || len(tc.devices) != tc.left {
			t.Errorf("%s: got %s, next %v, %d devices left; want %s, next %v, %d left",
				tc.name, state, next, len(tc.devices), tc.want, tc.wantNext, tc.left)
		}
	}
}
