package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestIdleRowsLeaveTheDaemonRunning: idleRows hands its daemon back
// running, for benchIdle to stop once both windows are over. Stopping
// closes the bench client's idle connections, every daemon's, so a daemon
// stopped at the end of its own window woke the other inside the other's
// window. The "daemon" is this process (its /proc entry gives the
// readings), never signalled.
func TestIdleRowsLeaveTheDaemonRunning(t *testing.T) {
	b := &bench{cfg: &config{idleRSSAfter: time.Millisecond, idleCPUWindow: 2 * time.Millisecond}, hc: newHTTPClient()}
	self := &daemon{pid: os.Getpid(), exited: make(chan struct{})}
	rows, d := idleRows(context.Background(), b, "rss", "", "cpu", "", func() (*daemon, error) { return self, nil })
	if d != self {
		t.Fatalf("idleRows returned daemon %v, want the one started", d)
	}
	if self.stopped {
		t.Fatal("idleRows stopped its daemon; benchIdle stops both after both windows")
	}
	if len(rows) != 2 || !strings.Contains(rows[1].value, "ticks of 10 ms") {
		t.Fatalf("rows %+v, want an RSS and a CPU reading", rows)
	}
}
