package daemon

import (
	"context"
	"fmt"
)

// startIndexMax bounds the search backlog that start-up indexes before the
// client listener serves. A first start commits a handful of events (the
// owner's account, the call agent's rooms); a daemon upgraded under a
// large unindexed history catches up in the background as before, rather
// than keeping its clients waiting.
const startIndexMax = 1000

// indexStartup indexes what start-up committed before the daemon says it
// is ready. Left to the index's consumer, it is written after the index's
// flush delay (internal/search flushDelay, 250 ms), which on a new data
// directory put a bbolt commit and two fdatasyncs (about 0.7 ms of CPU)
// into the first idle minute, and turned the idle GC step back on.
func (d *Daemon) indexStartup() error {
	pos, _ := d.rooms.Pos()
	done, err := d.search.Indexed()
	if err != nil {
		return fmt.Errorf("search index position: %w", err)
	}
	if pos <= done || pos-done > startIndexMax {
		return nil
	}
	if err := d.search.WaitFor(context.Background(), pos); err != nil {
		return fmt.Errorf("index start-up's events: %w", err)
	}
	return nil
}
