package daemon

import (
	"net/http"
	"runtime"
	"testing"
	"time"
)

func TestBusyPercent(t *testing.T) {
	defer func(h uint64) { busyGCHeadroom = h }(busyGCHeadroom)
	busyGCHeadroom = 24 << 20
	for _, c := range []struct {
		live uint64
		base int
		want int
	}{
		{0, 100, maxBusyGCPercent},
		{1 << 20, 100, maxBusyGCPercent}, // 2400% capped
		{8 << 20, 100, 300},
		{24 << 20, 100, 100},
		{100 << 20, 100, 100}, // a large heap keeps GOGC's own growth
		{8 << 20, 500, 500},
		{8 << 20, -1, -1},
	} {
		if got := busyPercent(c.live, c.base); got != c.want {
			t.Errorf("busyPercent(%d MiB, %d) = %d, want %d", c.live>>20, c.base, got, c.want)
		}
	}
}

// TestBusyDaemonGivesSmallHeapHeadroom: once a running daemon has been
// busy through a collection, its GC percent lets the small live heap of
// a test process grow by busyGCHeadroom rather than by its own size;
// stopping it leaves the percent as found.
func TestBusyDaemonGivesSmallHeapHeadroom(t *testing.T) {
	if runtimeTuned() {
		t.Skip("GOGC or GOMEMLIMIT is set: the daemon leaves the GC alone")
	}
	p0, _ := gcSettings()
	d, stop := startLoopbackDaemon(t)
	resp, err := http.Get("http://" + d.Addr() + "/_matrix/client/versions")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// The finalizer that sets the percent runs after a cycle, on its own
	// goroutine: collect until it has (bounded, timing nothing).
	var p int64
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		runtime.GC()
		if p, _ = gcSettings(); p > p0 {
			break
		}
	}
	if p <= p0 {
		t.Fatalf("busy with a small heap: GC percent %d, want above %d", p, p0)
	}
	stop()
	if p, _ := gcSettings(); p != p0 {
		t.Fatalf("after stop: GC percent %d, want %d", p, p0)
	}
}
