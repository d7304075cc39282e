package main

import "testing"

// TestGCLine reads the live heap from lines the Go 1.26 runtime writes
// under GODEBUG=gctrace=1 (copied from a run), the forced kind included,
// and nothing from a daemon log line.
func TestGCLine(t *testing.T) {
	log := `time=2026-12-06T15:41:20.000Z level=INFO msg="hearth ready"
gc 21 @0.080s 3%: 0.10+1.7+0.002 ms clock, 0.20+0.011/0.050/0.059+0.004 ms cpu, 9->17->7 MB, 11 MB goal, 0 MB stacks, 0 MB globals, 2 P
gc 23 @0.086s 3%: 0.082+0.11+0.001 ms clock, 0.16+0/0.046/0.059+0.003 ms cpu, 16->16->12 MB, 21 MB goal, 0 MB stacks, 0 MB globals, 2 P (forced)
`
	m := gcLine.FindAllStringSubmatch(log, -1)
	if len(m) != 2 || m[0][1] != "7" || m[1][1] != "12" {
		t.Fatalf("got %q, want live heaps 7 and 12", m)
	}
}
