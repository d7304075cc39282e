package daemon

import (
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// Go's runtime forces a garbage collection when none has run for two
// minutes (runtime.forcegcperiod), even in a process that allocates
// nothing: an idle daemon woke for 1.5–6 ms every 2 min for that alone,
// the last periodic cost it had (docs/performance.md, "Idle with the
// default configuration"). The runtime skips that forced GC when the GC
// percent is negative (GOGC=off), but a daemon that never collected would
// grow without bound under load. So idleGC switches it only while the
// daemon is idle: once no request has come and nothing was written to the
// store for idleGCQuiet (and right after start-up), it collects
// and returns the free heap to the OS (debug.FreeOSMemory, the cost of
// the one forced GC it replaces; trimExecutable drops the pages of the
// binary that are no longer used from the resident set), then turns the GC percent off with a
// memory limit of what is in use plus idleGCHeadroom, so that whatever
// does allocate while idle (an mDNS answer, a TURN packet, an outbound
// federation retry) is still collected when it adds up. The next request
// or store write restores the percent and the limit before it is handled. The quiet
// period is the forced GC's own period: a daemon busy more often than
// that collects as Go would have anyway.
//
// A person who set GOGC or GOMEMLIMIT tuned the runtime themselves:
// idleGC then stays out of the way.
var (
	idleGCQuiet    = 2 * time.Minute
	idleGCHeadroom = int64(16 << 20)
)

// theIdleGC is process-wide, as the runtime's settings are: every daemon
// in the process (tests start several) shares it, and it runs while at
// least one is started.
var theIdleGC = &idleGC{}

// idleGCEpoch is what activity times count from. It never changes: touch
// reads it without g.mu from any goroutine (a store commit's), so a start
// must not move it (it did, a data race while another daemon of the
// process was committing).
var idleGCEpoch = time.Now()

// sinceEpoch is now, as g.last counts it.
func sinceEpoch() int64 { return int64(time.Since(idleGCEpoch)) }

type idleGC struct {
	mu      sync.Mutex
	users   int         // started daemons
	timer   *time.Timer // armed while active; nil while idle or stopped
	percent int         // the GC percent found at start, restored at stop
	limit   int64       // the memory limit to restore
	busy    int         // the GC percent while busy (runtime_busy.go)
	saved   bool        // percent and limit hold what start found

	watching bool // a GC sentinel is armed (runtime_busy.go)

	last atomic.Int64 // time.Since(idleGCEpoch) of the latest activity
	idle atomic.Bool  // the GC percent is off
}

// runtimeTuned reports whether the environment already sets the GC.
func runtimeTuned() bool { return os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" }

// start registers a started daemon; the first arms the quiet timer. It
// returns the daemon's stop, which may be called more than once.
func (g *idleGC) start() (stop func()) {
	if runtimeTuned() {
		return func() {}
	}
	defer func() { stop = sync.OnceFunc(g.stop) }()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.users++
	if g.users > 1 {
		return nil
	}
	now := sinceEpoch()
	g.last.Store(now)
	g.saved = false
	if !g.watching {
		g.watchCycles()
	}
	// Start-up is over and no client has asked anything yet: idle now,
	// which also drops start-up's garbage and its pages of the binary
	// before the first client comes (a millisecond or two of start time).
	g.goIdle(now)
	return nil
}

// stop unregisters a daemon; the last one leaves the runtime as found.
func (g *idleGC) stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.users == 0 {
		return
	}
	g.users--
	if g.users > 0 {
		return
	}
	if g.timer != nil {
		g.timer.Stop()
		g.timer = nil
	}
	g.restore()
	debug.SetGCPercent(g.percent) // not the busy percent: as found
}

// touch records activity (a request, a store commit); if the daemon was
// idle it turns the GC back on before the caller goes on to allocate.
func (g *idleGC) touch() {
	g.last.Store(sinceEpoch())
	if !g.idle.Load() {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.idle.Load() && g.users > 0 {
		g.restore()
		g.timer = time.AfterFunc(idleGCQuiet, g.check)
	}
}

// check runs when the quiet timer fires: idle if nothing happened for
// the quiet period, else it waits for the rest of it.
func (g *idleGC) check() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.users == 0 || g.idle.Load() {
		return
	}
	last := g.last.Load()
	if rest := idleGCQuiet - time.Duration(sinceEpoch()-last); rest > 0 {
		g.timer = time.AfterFunc(rest, g.check)
		return
	}
	g.timer = nil
	g.goIdle(last)
}

// goIdle collects, returns what it can to the OS and turns the GC percent
// off under a memory limit; g.mu is held, last is the activity seen.
func (g *idleGC) goIdle(last int64) {
	debug.FreeOSMemory()
	trimExecutable()
	limit, percent := debug.SetMemoryLimit(-1), debug.SetGCPercent(-1)
	if !g.saved {
		g.limit, g.percent, g.busy, g.saved = limit, percent, percent, true
	}
	debug.SetMemoryLimit(min(g.limit, runtimeInUse()+idleGCHeadroom))
	g.idle.Store(true)
	// A touch between reading last and setting idle saw the GC on and
	// did not restore it: do it for that touch.
	if g.last.Load() != last {
		g.restore()
		g.timer = time.AfterFunc(idleGCQuiet, g.check)
	}
}

// restore puts back the busy GC percent and the memory limit; g.mu is
// held.
func (g *idleGC) restore() {
	debug.SetGCPercent(g.busy)
	debug.SetMemoryLimit(g.limit)
	g.idle.Store(false)
}

// runtimeInUse is the memory the runtime counts against its memory limit:
// everything it has mapped but not returned to the OS.
func runtimeInUse() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 || s[1].Value.Kind() != metrics.KindUint64 {
		return math.MaxInt64 / 2 // unknown: no limit worth the name
	}
	return int64(s[0].Value.Uint64() - s[1].Value.Uint64())
}
