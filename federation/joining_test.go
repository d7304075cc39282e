package federation

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/internal/room"
)

// joinRace is a resident server, hs1, that answers a joining server's
// send_join only after running push: what the test sends the joining
// server while its join is in flight (hs1 has already stored the join,
// as a resident server does before it answers). With refuse set, hs1
// answers send_join with 403 without storing the join.
type joinRace struct {
	mu     sync.Mutex
	push   func(t *testing.T)
	refuse bool
}

// interceptSendJoin routes n's requests for s through jr.
func interceptSendJoin(t *testing.T, n *ukNet, s *ukServer, jr *joinRace) {
	inner := s.svc.Handler()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/send_join/") {
			inner.ServeHTTP(w, r)
			return
		}
		jr.mu.Lock()
		push, refuse := jr.push, jr.refuse
		jr.mu.Unlock()
		rec := httptest.NewRecorder()
		if !refuse {
			inner.ServeHTTP(rec, r)
		}
		if push != nil {
			push(t)
		}
		if refuse {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"errcode":"M_FORBIDDEN","error":"test: refused"}`))
			return
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(srv.Close)
	n.mu.Lock()
	n.servers[s.name] = srv
	n.mu.Unlock()
}

// sendPDUs sends the PDUs from s to server in one /send transaction and
// returns the answer's per-PDU results.
func (s *ukServer) sendPDUs(t *testing.T, server, txnID string, pdus ...json.RawMessage) map[string]fclient.PDUResult {
	t.Helper()
	txn := gomatrixserverlib.Transaction{Origin: spec.ServerName(s.name), OriginServerTS: spec.AsTimestamp(time.Now()), PDUs: pdus}
	var res fclient.RespSend
	if err := s.svc.signedRequest(context.Background(), http.MethodPut, server, "/_matrix/federation/v1/send/"+txnID, txn, &res); err != nil {
		t.Fatalf("/send %s: %v", txnID, err)
	}
	return res.PDUs
}

// sendMessage has user send a message in roomID on s and returns the
// event as s serves it to server.
func (s *ukServer) sendMessage(t *testing.T, user, roomID, body, server string) gomatrixserverlib.PDU {
	t.Helper()
	ctx := context.Background()
	id, err := s.rooms.Send(ctx, room.SendRequest{Sender: user, RoomID: roomID, Type: "m.room.message", Device: "ADEV",
		TxnID: "m-" + body, Content: json.RawMessage(fmt.Sprintf(`{"msgtype":"m.text","body":%q}`, body))})
	if err != nil {
		t.Fatal(err)
	}
	pdu, err := s.rooms.PDU(server, roomID, id)
	if err != nil {
		t.Fatal(err)
	}
	return pdu
}

// timelineIDs is the event IDs of user's timeline of roomID on s, oldest
// first.
func (s *ukServer) timelineIDs(t *testing.T, user, roomID string) []string {
	t.Helper()
	page, err := s.rooms.Messages(user, "", roomID, 1<<62, 0, room.Backward, room.EventFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := len(page.Chunk) - 1; i >= 0; i-- {
		ids = append(ids, page.Chunk[i].EventID)
	}
	return ids
}

// heldCount is the number of PDUs held for roomID.
func (j *joins) heldCount(roomID string) int {
	j.mu.Lock()
	defer j.mu.Unlock()
	if r := j.rooms[roomID]; r != nil {
		return len(r.held)
	}
	return 0
}

// TestEventsDuringJoinKept: bob@hs2 joins alice@hs1's room through hs1.
// hs1 stores the join, and before it answers send_join alice sends a
// message, which hs1 pushes to hs2 at once (with the room's create event
// and alice's membership, which the send_join answer also holds). hs2
// answers {} for each, and once /join returns bob's timeline has the
// message, after his join, and no event twice.
func TestEventsDuringJoinKept(t *testing.T) {
	n := newUKNet()
	hs1, hs2 := newUKServer(t, n, "hs1.test", false), newUKServer(t, n, "hs2.test", false)
	alice := hs1.addUser(t, "alice", "ADEV", false)
	bob := hs2.addUser(t, "bob", "BDEV", false)
	ctx := context.Background()
	roomID, err := hs1.rooms.CreateRoom(ctx, alice, room.Profile{}, room.CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	create := hs1.rooms.CurrentStatePDU(roomID, "m.room.create", "")
	aliceJoin := hs1.rooms.CurrentStatePDU(roomID, "m.room.member", alice)
	var msg gomatrixserverlib.PDU
	var answer map[string]fclient.PDUResult
	jr := &joinRace{push: func(t *testing.T) {
		msg = hs1.sendMessage(t, alice, roomID, "ring ring", "hs2.test")
		answer = hs1.sendPDUs(t, "hs2.test", "during-join", create.JSON(), aliceJoin.JSON(), msg.JSON())
	}}
	interceptSendJoin(t, n, hs1, jr)
	if err := hs2.svc.JoinRoom(ctx, bob, roomID, []string{"hs1.test"}, map[string]any{"membership": "join"}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{create.EventID(), aliceJoin.EventID(), msg.EventID()} {
		if res, ok := answer[id]; !ok || res.Error != "" {
			t.Errorf("/send answer for %s during the join: %+v (present %v), want {}", id, res, ok)
		}
	}
	if _, err := hs2.rooms.Event(bob, roomID, msg.EventID()); err != nil {
		t.Fatalf("the message sent during the join is not in bob's room: %v", err)
	}
	ids := hs2.timelineIDs(t, bob, roomID)
	seen := map[string]int{}
	for _, id := range ids {
		seen[id]++
	}
	for id, c := range seen {
		if c > 1 {
			t.Errorf("event %s is %d times in the timeline %v", id, c, ids)
		}
	}
	if len(ids) == 0 || ids[len(ids)-1] != msg.EventID() {
		t.Errorf("timeline %v does not end with the message %s", ids, msg.EventID())
	}
	if hs2.svc.joining.heldCount(roomID) != 0 || hs2.svc.joining.bytes != 0 {
		t.Errorf("held PDUs left after the join: %d, %d bytes", hs2.svc.joining.heldCount(roomID), hs2.svc.joining.bytes)
	}
}

// TestEventsDuringJoinBounded: a resident server that floods a room while
// our join to it is in flight gets {} for the first maxHeldPerRoom PDUs
// and an error for the rest; only those held reach the timeline.
func TestEventsDuringJoinBounded(t *testing.T) {
	n := newUKNet()
	hs1, hs2 := newUKServer(t, n, "hs1.test", false), newUKServer(t, n, "hs2.test", false)
	alice := hs1.addUser(t, "alice", "ADEV", false)
	bob := hs2.addUser(t, "bob", "BDEV", false)
	ctx := context.Background()
	roomID, err := hs1.rooms.CreateRoom(ctx, alice, room.Profile{}, room.CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	const total = maxHeldPerRoom + 20
	var msgs []gomatrixserverlib.PDU
	answers := map[string]fclient.PDUResult{}
	jr := &joinRace{push: func(t *testing.T) {
		for i := range total {
			msgs = append(msgs, hs1.sendMessage(t, alice, roomID, fmt.Sprintf("flood %d", i), "hs2.test"))
		}
		for i := 0; i < total; i += maxPDUs {
			var batch []json.RawMessage
			for _, m := range msgs[i:min(i+maxPDUs, total)] {
				batch = append(batch, m.JSON())
			}
			for id, res := range hs1.sendPDUs(t, "hs2.test", fmt.Sprintf("flood-%d", i), batch...) {
				answers[id] = res
			}
		}
		if got := hs2.svc.joining.heldCount(roomID); got != maxHeldPerRoom {
			t.Errorf("hs2 holds %d PDUs for the room, want %d", got, maxHeldPerRoom)
		}
	}}
	interceptSendJoin(t, n, hs1, jr)
	if err := hs2.svc.JoinRoom(ctx, bob, roomID, []string{"hs1.test"}, map[string]any{"membership": "join"}); err != nil {
		t.Fatal(err)
	}
	for i, m := range msgs {
		res, ok := answers[m.EventID()]
		_, stored := hs2.rooms.Event(bob, roomID, m.EventID())
		if i < maxHeldPerRoom {
			if !ok || res.Error != "" || stored != nil {
				t.Errorf("message %d: answer %+v (present %v), stored: %v; want {} and stored", i, res, ok, stored)
			}
		} else if !ok || res.Error == "" || stored == nil {
			t.Errorf("message %d: answer %+v (present %v), stored: %v; want an error and not stored", i, res, ok, stored)
		}
	}
	if hs2.svc.joining.bytes != 0 {
		t.Errorf("%d held bytes left after the join", hs2.svc.joining.bytes)
	}
}

// TestEventsDuringFailedJoinDropped: PDUs held while a join is in flight
// are dropped when it fails; afterwards a PDU of that room is treated as
// one of any room this server is not in (no answer about it).
func TestEventsDuringFailedJoinDropped(t *testing.T) {
	n := newUKNet()
	hs1, hs2 := newUKServer(t, n, "hs1.test", false), newUKServer(t, n, "hs2.test", false)
	alice := hs1.addUser(t, "alice", "ADEV", false)
	bob := hs2.addUser(t, "bob", "BDEV", false)
	ctx := context.Background()
	roomID, err := hs1.rooms.CreateRoom(ctx, alice, room.Profile{}, room.CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	var msg gomatrixserverlib.PDU
	var answer map[string]fclient.PDUResult
	jr := &joinRace{refuse: true, push: func(t *testing.T) {
		msg = hs1.sendMessage(t, alice, roomID, "never mind", "hs1.test")
		answer = hs1.sendPDUs(t, "hs2.test", "during-join", msg.JSON())
		if got := hs2.svc.joining.heldCount(roomID); got != 1 {
			t.Errorf("hs2 holds %d PDUs during the join, want 1", got)
		}
	}}
	interceptSendJoin(t, n, hs1, jr)
	if err := hs2.svc.JoinRoom(ctx, bob, roomID, []string{"hs1.test"}, map[string]any{"membership": "join"}); err == nil {
		t.Fatal("join succeeded through a server that refused send_join")
	}
	if res, ok := answer[msg.EventID()]; !ok || res.Error != "" {
		t.Errorf("/send answer during the join: %+v (present %v), want {}", res, ok)
	}
	if hs2.svc.joining.heldCount(roomID) != 0 || hs2.svc.joining.bytes != 0 || len(hs2.svc.joining.rooms) != 0 {
		t.Errorf("held PDUs kept after a failed join: %d, %d bytes, %d rooms", hs2.svc.joining.heldCount(roomID),
			hs2.svc.joining.bytes, len(hs2.svc.joining.rooms))
	}
	if hs2.rooms.RoomExists(roomID) {
		t.Errorf("hs2 knows the room after a failed join")
	}
	// No join in flight now: as before this change, nothing is said
	// about an event of a room this server is not in.
	if res := hs1.sendPDUs(t, "hs2.test", "after-join", msg.JSON()); len(res) != 0 {
		t.Errorf("/send answer after the failed join: %+v, want none", res)
	}
	if hs2.svc.joining.heldCount(roomID) != 0 {
		t.Errorf("a PDU was held with no join in flight")
	}
}

// testEvent builds a signed message of roomID (room version 10) whose
// body is size bytes long.
func testEvent(t *testing.T, roomID string, size int) json.RawMessage {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	eb := gomatrixserverlib.MustGetRoomVersion(gomatrixserverlib.RoomVersionV10).NewEventBuilder()
	eb.SenderID, eb.RoomID, eb.Type, eb.Depth = "@alice:hs1.test", roomID, "m.room.message", 5
	eb.PrevEvents, eb.AuthEvents = []string{"$prev"}, []string{"$auth"}
	if err := eb.SetContent(map[string]any{"msgtype": "m.text", "body": strings.Repeat("x", size)}); err != nil {
		t.Fatal(err)
	}
	pdu, err := eb.Build(time.Now(), "hs1.test", "ed25519:t", key)
	if err != nil {
		t.Fatal(err)
	}
	return pdu.JSON()
}

// TestJoinsHoldBounds: held PDUs are bounded in bytes over all rooms
// (besides the count per room), and a full queue refuses with an event
// ID; a PDU arriving before send_join went out, or for a room with no join
// in flight, is not held.
func TestJoinsHoldBounds(t *testing.T) {
	var j joins
	const roomA, roomB = "!a:hs1.test", "!b:hs1.test"
	if _, _, held := j.hold(roomA, "hs1.test", testEvent(t, roomA, 10)); held {
		t.Fatal("held a PDU with no join in flight")
	}
	j.begin(roomA)
	if _, _, held := j.hold(roomA, "hs1.test", testEvent(t, roomA, 10)); held {
		t.Fatal("held a PDU before send_join went out (its room version is unknown)")
	}
	j.sendingJoin(roomA, gomatrixserverlib.RoomVersionV10)
	j.begin(roomB)
	j.sendingJoin(roomB, gomatrixserverlib.RoomVersionV10)
	big := 60 << 10
	full := 0
	for i := range 2 * maxHeldPerRoom {
		roomID := []string{roomA, roomB}[i%2]
		id, err, held := j.hold(roomID, "hs1.test", testEvent(t, roomID, big))
		if !held || id == "" {
			t.Fatalf("PDU %d: held %v, id %q", i, held, id)
		}
		if err != nil {
			full++
		}
		if j.bytes > maxHeldBytes {
			t.Fatalf("%d bytes held, over the bound %d", j.bytes, maxHeldBytes)
		}
	}
	if full == 0 {
		t.Errorf("%d PDUs of %d bytes each all held", 2*maxHeldPerRoom, big)
	}
	if got := j.heldCount(roomA) + j.heldCount(roomB); got+full != 2*maxHeldPerRoom {
		t.Errorf("held %d and refused %d of %d", got, full, 2*maxHeldPerRoom)
	}
	// A room's join failing gives its bytes back.
	j.end(roomA, false)
	if j.heldCount(roomA) != 0 {
		t.Errorf("room A's PDUs kept after its join failed")
	}
	if _, err, _ := j.hold(roomB, "hs1.test", testEvent(t, roomB, big)); err != nil {
		t.Errorf("room B refused after room A's bytes were given back: %v", err)
	}
	// An invalid event is answered about, not held.
	bad := testEvent(t, roomB, 10)
	bad = bytes.Replace(bad, []byte(`"depth":5`), []byte(`"depth":-5`), 1)
	before := j.heldCount(roomB)
	if id, err, held := j.hold(roomB, "hs1.test", bad); !held || id == "" || err == nil || j.heldCount(roomB) != before {
		t.Errorf("invalid event: held %v, id %q, err %v", held, id, err)
	}
}

// TestJoinsTwoJoinsOneFails: two local users join the same room at once;
// the first to fail keeps the held PDUs for the other, which gets them.
func TestJoinsTwoJoinsOneFails(t *testing.T) {
	var j joins
	const roomID = "!a:hs1.test"
	j.begin(roomID)
	j.begin(roomID)
	j.sendingJoin(roomID, gomatrixserverlib.RoomVersionV10)
	raw := testEvent(t, roomID, 10)
	if _, err, held := j.hold(roomID, "hs1.test", raw); !held || err != nil {
		t.Fatalf("held %v, err %v", held, err)
	}
	if got := j.end(roomID, false); got != nil {
		t.Errorf("a failed join handed out %d PDUs", len(got))
	}
	got := j.end(roomID, true)
	if len(got) != 1 || !bytes.Equal(got[0].raw, raw) || got[0].origin != "hs1.test" {
		t.Errorf("the join that succeeded got %+v", got)
	}
	if j.bytes != 0 || len(j.rooms) != 0 {
		t.Errorf("%d bytes, %d rooms left", j.bytes, len(j.rooms))
	}
}
