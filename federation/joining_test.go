package federation

import (
	"context"
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
