package room

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
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

// BenchmarkSendSeparateRooms is the engine's share of the bench's row "32
// concurrent senders, 1 room each": one goroutine per room, each sending
// back to back. cpu-µs/op is the process's CPU (user + system, the
// store's writer and fsyncs included) per send.
func BenchmarkSendSeparateRooms(b *testing.B) {
	ctx := context.Background()
	e, _ := newEngine(b)
	const rooms = 32
	ids := make([]string, rooms)
	for i := range ids {
		id, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = id
	}
	var n, next atomic.Int64
	cpu0 := cpuTime()
	b.ResetTimer()
	var wg sync.WaitGroup
	for range rooms {
		roomID := ids[next.Add(1)-1]
		wg.Go(func() {
			for {
				i := n.Add(1)
				if i > int64(b.N) {
					return
				}
				if _, err := e.Send(ctx, SendRequest{Sender: alice, Device: "D", RoomID: roomID, Type: "m.room.message",
					Content: json.RawMessage(`{"msgtype":"m.text","body":"hello"}`), TxnID: strconv.FormatInt(i, 10)}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
