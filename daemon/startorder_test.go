package daemon

import "testing"

// TestDiscoveryStartsBeforeServing: LAN discovery is running when the
// client listener starts serving, so its set-up (sockets, interfaces, the
// first announcement) is start-up's cost and not the first idle minute's
// (before, it started after the listener served: a client could see the
// daemon ready while discovery was still being set up).
func TestDiscoveryStartsBeforeServing(t *testing.T) {
	var running, seen bool
	serving = func(d *Daemon) { seen, running = true, d.lanService() != nil }
	defer func() { serving = nil }()
	d, _ := startTestDaemon(t)
	if d.lanService() == nil {
		t.Skip("LAN discovery did not start here (no mDNS socket)")
	}
	if !seen || !running {
		t.Fatalf("when the client listener started serving: hook ran %v, discovery running %v", seen, running)
	}
}
