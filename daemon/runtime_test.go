package daemon

import (
	"context"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// gcSettings reads the runtime's GC percent and memory limit without
// changing them (debug.SetGCPercent would).
func gcSettings() (percent int64, limit uint64) {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64()), s[1].Value.Uint64()
}

// waitGC waits until the runtime's GC percent is want (the quiet timer
// fires on its own schedule; the wait bounds a hang, it times nothing).
func waitGC(t *testing.T, want int64) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if p, _ := gcSettings(); p == want {
			return
		}
	}
	p, l := gcSettings()
	t.Fatalf("GC percent %d (limit %d), want %d", p, l, want)
}

// TestIdleDaemonTurnsForcedGCOff: a daemon left alone for the quiet period
// turns the GC percent off (the runtime then skips its forced GC every
// 2 min) under a memory limit, and its next request or store write turns
// it back on;
// stopping the last daemon leaves the runtime as it found it.
func TestIdleDaemonTurnsForcedGCOff(t *testing.T) {
	if runtimeTuned() {
		t.Skip("GOGC or GOMEMLIMIT is set: the daemon leaves the GC alone")
	}
	defer func(q time.Duration) { idleGCQuiet = q }(idleGCQuiet)
	idleGCQuiet = 200 * time.Millisecond
	p0, l0 := gcSettings()
	if p0 < 0 || l0 != math.MaxInt64 {
		t.Fatalf("test process starts with GC percent %d, limit %d", p0, l0)
	}

	d, stop := startLoopbackDaemon(t)
	waitGC(t, -1)
	if _, l := gcSettings(); l == math.MaxInt64 || int64(l) < idleGCHeadroom {
		t.Fatalf("idle with the GC off and memory limit %d: nothing bounds the heap", l)
	}

	resp, err := http.Get("http://" + d.Addr() + "/_matrix/client/versions")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// The request turned it on before it was handled, so no wait here
	// (at the busy percent, which is never below the one found).
	if p, l := gcSettings(); p < p0 || l != l0 {
		t.Fatalf("after a request: GC percent %d limit %d, want %d %d", p, l, p0, l0)
	}

	// A store write made by no request (as a delayed event's timer makes
	// one) is work too.
	waitGC(t, -1)
	if err := d.accounts.PutAccountData(context.Background(), ownerName(), "", "org.example.idle", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if p, l := gcSettings(); p < p0 || l != l0 {
		t.Fatalf("after a store write: GC percent %d limit %d, want %d %d", p, l, p0, l0)
	}

	waitGC(t, -1) // quiet again
	stop()
	if p, l := gcSettings(); p != p0 || l != l0 {
		t.Fatalf("after stop: GC percent %d limit %d, want %d %d", p, l, p0, l0)
	}
}

// exeRSS is how much of the test binary's own file is resident in this
// process (smaps: the Rss of the mappings of /proc/self/exe).
func exeRSS(t *testing.T) int64 {
	t.Helper()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Skip("no /proc/self/exe here")
	}
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skip("no /proc/self/smaps here")
	}
	var total int64
	mine := false
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && strings.Contains(f[0], "-") && len(f[1]) == 4 {
			mine = len(f) >= 6 && f[5] == exe
			continue
		}
		if mine && len(f) >= 2 && f[0] == "Rss:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			total += kb << 10
		}
	}
	return total
}

// TestTrimExecutable: trimming drops most of the binary's resident pages
// from this process (what runs next faults a few back in at once: the
// reading of smaps itself).
func TestTrimExecutable(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("trimExecutable trims on Linux only")
	}
	before := exeRSS(t)
	n := trimExecutable()
	after := exeRSS(t)
	if n <= 0 || after > before/2 {
		t.Fatalf("trimmed %d bytes: the executable's resident pages went from %d KiB to %d KiB", n, before>>10, after>>10)
	}
}

// startLoopbackDaemon starts a daemon on a fresh data dir with only the
// client API on loopback (no federation, no LAN discovery, signing key in
// a file); stop stops it once, and the test's clean-up calls it too.
func startLoopbackDaemon(t *testing.T) (d *Daemon, stop func()) {
	t.Helper()
	cfg := Defaults()
	cfg.DataDir = t.TempDir()
	cfg.File = filepath.Join(cfg.DataDir, "hearth.conf")
	cfg.ClientListen = "127.0.0.1:0"
	cfg.KeyStore = KeyStoreFile
	cfg.Federation = FederationOff
	cfg.LANDiscovery = "off"
	d, err := Start(cfg, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop = sync.OnceFunc(func() { d.Stop(context.Background()) })
	t.Cleanup(stop)
	return d, stop
}
