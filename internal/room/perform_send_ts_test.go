package room

import (
	"context"
	"encoding/json"
	"testing"
	"time"
)

// TestSendTimestampOverride: an application service's `ts` becomes the
// event's origin_server_ts (Application Service API §"Timestamp
// massaging"); without it the server's clock is used.
func TestSendTimestampOverride(t *testing.T) {
	ctx := context.Background()
	e, _ := newEngine(t)
	roomID, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "private_chat"})
	if err != nil {
		t.Fatal(err)
	}
	past := time.UnixMilli(1_500_000_000_123)
	id, err := e.Send(ctx, SendRequest{Sender: alice, Device: "D", RoomID: roomID, Type: "m.room.message",
		Content: json.RawMessage(`{"msgtype":"m.text","body":"old"}`), TxnID: "1", TS: past})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := e.Event(alice, roomID, id)
	if err != nil {
		t.Fatal(err)
	}
	if ev.OriginServerTS != past.UnixMilli() {
		t.Fatalf("origin_server_ts %d, want %d", ev.OriginServerTS, past.UnixMilli())
	}
	sk := ""
	id, err = e.Send(ctx, SendRequest{Sender: alice, RoomID: roomID, Type: "m.room.topic", StateKey: &sk,
		Content: json.RawMessage(`{"topic":"now"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if ev, _ = e.Event(alice, roomID, id); time.Since(time.UnixMilli(ev.OriginServerTS)) > time.Hour {
		t.Fatalf("without ts the clock is not used: %d", ev.OriginServerTS)
	}
}
