package daemon

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// While busy, GOGC's 100% lets the heap grow only by the live heap before
// the next collection, and a daemon's live heap is small (about 10 MiB
// sending in one room): it collected every ~10 MiB allocated, 7–10% of
// its CPU under load (docs/performance.md, "One hot room: the
// notification log (issue 15)"). busyGCHeadroom sets a floor on that
// growth instead, as a higher GC percent computed after each collection
// from the live heap: a small heap may grow by busyGCHeadroom, a heap
// larger than it by its own size as before (GOGC 100), so a large live
// heap is never squeezed (a memory limit would be, and would make the GC
// run without pause). Anonymous memory under load stays below the live
// heap plus the larger of the two. Idle, idleGC's settings apply; a
// person who set GOGC or GOMEMLIMIT gets theirs (runtimeTuned).
var busyGCHeadroom = uint64(24 << 20)

// maxBusyGCPercent bounds the percent for a tiny live heap.
const maxBusyGCPercent = 1000

// busyPercent is the GC percent that gives a live heap of live bytes
// busyGCHeadroom to grow, never below base.
func busyPercent(live uint64, base int) int {
	if base < 0 {
		return base
	}
	p := maxBusyGCPercent
	if live > 0 {
		p = int(min(busyGCHeadroom*100/live, maxBusyGCPercent))
	}
	return max(p, base)
}

// gcSentinel is garbage whose finalizer runs after the collection that
// finds it unreachable: the way to hear of each GC cycle (it holds a
// pointer so that it is not a tiny allocation sharing a block).
type gcSentinel struct{ _ *int }

// watchCycles arms the sentinel for the next GC; g.mu is held.
func (g *idleGC) watchCycles() {
	g.watching = true
	runtime.SetFinalizer(&gcSentinel{}, func(*gcSentinel) { g.afterGC() })
}

// afterGC sets the busy GC percent from the live heap the cycle left,
// and re-arms for the next cycle while a daemon runs.
func (g *idleGC) afterGC() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.users == 0 {
		g.watching = false
		return
	}
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindUint64 {
		g.busy = busyPercent(s[0].Value.Uint64(), g.percent)
		if !g.idle.Load() {
			debug.SetGCPercent(g.busy)
		}
	}
	g.watchCycles()
}
