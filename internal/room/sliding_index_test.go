package room

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"maps"

	"reflect"
	"sync"
	"testing"

	"github.com/hearth-chat/hearth/internal/store"
	"github.com/hearth-chat/hearth/internal/stream"
)

// TestSlidingIncrementalReadsChangedRoom: once a user's room list and
// member events have been read, the next request after a change in one
// room reads only that room's record (not each of the user's rooms), and
// gives what an engine with nothing cached (a restarted one) gives.
func TestSlidingIncrementalReadsChangedRoom(t *testing.T) {
	ctx := context.Background()
	e, db := newEngine(t)
	var rooms []string
	for i := 0; i < 30; i++ {
		id, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		rooms = append(rooms, id)
	}
	var mu sync.Mutex
	read := map[uint64]bool{}
	hook := func(nid uint64) { mu.Lock(); read[nid] = true; mu.Unlock() }
	roomRecordRead.Store(&hook)
	defer roomRecordRead.Store(nil)
	nidOf := func(roomID string) uint64 {
		var nid uint64
		db.View(func(tx *store.Tx) error { nid = store.U64(tx.Get(store.Rooms, []byte(roomID))); return nil })
		return nid
	}
	_, key, _ := ed25519.GenerateKey(nil)
	// request reads the list and the member events since, checks them
	// against a cold engine's, and returns the rooms whose record it read.
	request := func(since uint64) (uint64, map[string][]ClientEvent, map[uint64]bool) {
		t.Helper()
		now, _ := e.Pos()
		mu.Lock()
		clear(read)
		mu.Unlock()
		list, err := e.SlidingList(alice, now, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		joined, left, err := e.MemberEventsSince(alice, since, now)
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		got := maps.Clone(read)
		mu.Unlock()
		cold := New(db, stream.New(now), Config{ServerName: "test.local", KeyID: "ed25519:t", PrivateKey: key})
		coldList, err := cold.SlidingList(alice, now, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		coldJoined, coldLeft, err := cold.MemberEventsSince(alice, since, now)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(list, coldList) || !reflect.DeepEqual(joined, coldJoined) || !reflect.DeepEqual(left, coldLeft) {
			t.Fatalf("cached and cold answers differ:\n%+v %+v %+v\n%+v %+v %+v", list, joined, left, coldList, coldJoined, coldLeft)
		}
		if len(list) != len(rooms) {
			t.Fatalf("list has %d rooms, want %d", len(list), len(rooms))
		}
		return now, joined, got
	}
	p0, _, _ := request(0)
	p1, _, _ := request(p0) // warm: both caches filled

	// A message in one room: only that room is read.
	if _, err := e.Send(ctx, SendRequest{Sender: alice, RoomID: rooms[7], Type: "m.room.message",
		Content: json.RawMessage(`{"msgtype":"m.text","body":"hi"}`), TxnID: "m1"}); err != nil {
		t.Fatal(err)
	}
	p2, joined, got := request(p1)
	if len(joined) != 0 || !subset(got, nidOf(rooms[7])) {
		t.Fatalf("after a message: member events %v, room records read %v, want none and only room %d", joined, got, nidOf(rooms[7]))
	}
	// A join in another room: only that room is read, and the join is there.
	if _, err := e.ChangeMembership(ctx, MembershipRequest{Sender: bob, RoomID: rooms[21], Target: bob, Membership: "join"}); err != nil {
		t.Fatal(err)
	}
	_, joined, got = request(p2)
	if len(joined) != 1 || len(joined[rooms[21]]) != 1 || *joined[rooms[21]][0].StateKey != bob || !subset(got, nidOf(rooms[21])) {
		t.Fatalf("after a join: member events %v, room records read %v, want bob's join and only room %d", joined, got, nidOf(rooms[21]))
	}
}

// subset says whether got holds no room but want.
func subset(got map[uint64]bool, want uint64) bool {
	for nid := range got {
		if nid != want {
			return false
		}
	}
	return true
}

// TestRoomIndexOlderSnapshot: a request whose snapshot is older than the
// index (a newer request moved it on meanwhile) is told to read the
// store, as the index's positions may be past what it can see; one at
// the index's position is answered, with the room's LastPos as stored.
func TestRoomIndexOlderSnapshot(t *testing.T) {
	ctx := context.Background()
	e, db := newEngine(t)
	roomID, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	err = db.View(func(old *store.Tx) error {
		nid := store.U64(old.Get(store.Rooms, []byte(roomID)))
		if _, err := e.Send(ctx, SendRequest{Sender: alice, RoomID: roomID, Type: "m.room.message",
			Content: json.RawMessage(`{"msgtype":"m.text","body":"later"}`), TxnID: "t1"}); err != nil {
			return err
		}
		now, _ := e.Pos()
		if _, err := e.SlidingList(alice, now, nil, nil); err != nil { // moves the index to now
			return err
		}
		if _, _, _, ok, err := e.roomPositions(old, []uint64{nid}); err != nil || ok {
			t.Errorf("older snapshot: ok %v, err %v; want not ok", ok, err)
		}
		return db.View(func(cur *store.Tx) error {
			last, _, _, ok, err := e.roomPositions(cur, []uint64{nid})
			if want, _ := roomLastPos(cur, nid); err != nil || !ok || last[0] != want || want != now {
				t.Errorf("current snapshot: %v %v %v, want LastPos %d", last, ok, err, now)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}
