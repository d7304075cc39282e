package daemon

import (
	"testing"
	"time"
)

// TestNetworkChange checks the two signs the network watch reads: a wall
// clock that ran ahead of the monotonic one (the machine slept) and a
// change in the interface addresses.
func TestNetworkChange(t *testing.T) {
	addrs := []string{"10.0.0.2/24", "127.0.0.1/8"}
	if why := changed(watchInterval, watchInterval, addrs, addrs); why != "" {
		t.Errorf("an ordinary tick reported %q", why)
	}
	if why := changed(watchInterval+time.Second, watchInterval, addrs, addrs); why != "" {
		t.Errorf("a tick a second late reported %q", why)
	}
	// Asleep for the night: the wall clock moved, the monotonic one did not.
	if why := changed(8*time.Hour, watchInterval, addrs, addrs); why != "woke from sleep" {
		t.Errorf("a tick after a night asleep reported %q", why)
	}
	moved := []string{"127.0.0.1/8", "192.168.1.7/24"}
	if why := changed(watchInterval, watchInterval, addrs, moved); why != "network changed" {
		t.Errorf("new addresses reported %q", why)
	}
}
