package room

import (
	"context"
	"encoding/json"
	"strconv"
	"sync/atomic"
	"testing"
)

// BenchmarkSendParallel measures the engine's send path with group commit
// (go test -bench Send -run ^$ ./internal/room): 16 goroutines per core
// sending into one room, so every send goes through that room's sequencer
// (perform_sequencer.go). Add -cpuprofile to see where building an event goes.
// Figures for the record go through `make bench`, which measures the
// whole daemon.
func BenchmarkSendParallel(b *testing.B) {
	ctx := context.Background()
	e, _ := newEngine(b)
	roomID, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if _, err := e.Send(ctx, SendRequest{Sender: alice, Device: "D", RoomID: roomID, Type: "m.room.message",
				Content: json.RawMessage(`{"msgtype":"m.text","body":"hello"}`), TxnID: strconv.FormatInt(i, 10)}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
