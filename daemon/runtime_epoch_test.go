//go:build race

// Only the race detector can see this test fail, so it is built only
// with it (go test -race ./daemon).

package daemon

import (
	"sync"
	"sync/atomic"
	"testing"
)

// TestIdleGCTouchWhileStarting: a store commit's touch (from the store's
// writer goroutine, without g.mu) may come while a daemon of the same
// process starts or stops: the idle GC's shared state must not be written
// under it. The race detector (go test -race) is what sees a failure
// here: start used to reset the time base touch reads.
func TestIdleGCTouchWhileStarting(t *testing.T) {
	if runtimeTuned() {
		t.Skip("GOGC or GOMEMLIMIT is set: the daemon leaves the GC alone")
	}
	g := &idleGC{}
	var done atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		for !done.Load() {
			g.touch()
		}
	})
	for range 20 {
		stop := g.start()
		g.touch()
		stop()
	}
	done.Store(true)
	wg.Wait()
	if g.users != 0 {
		t.Fatalf("%d daemons still counted after every stop", g.users)
	}
}
