package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// The test peer as a resident server (fedpeer_test.go): it creates rooms
// of its own and serves make_join and send_join for them, so a local
// user of the daemon can join them over federation. Between storing a
// join and answering send_join it runs what the test asked for (as a
// busy resident server sends the room's new events to the joining server
// before that server has read its send_join answer).

// hosting is the peer's state as a resident server, guarded by
// fedPeer.mu.
type hosting struct {
	hostedRooms int
	// beforeJoinAnswer runs, per room, after the peer stored a join
	// and before it answers send_join.
	beforeJoinAnswer map[string]func(join gomatrixserverlib.PDU)
}

// hostRoom creates a public room (version 10) on the peer with mallory
// as its creator and returns its ID.
func (p *fedPeer) hostRoom() string {
	t := p.t
	t.Helper()
	p.mu.Lock()
	p.hostedRooms++
	roomID := fmt.Sprintf("!hosted%d:%s", p.hostedRooms, p.Name)
	rm := &peerRoom{version: gomatrixserverlib.RoomVersionV10, state: map[string]gomatrixserverlib.PDU{}}
	p.rooms[roomID] = rm
	p.mu.Unlock()
	eb := gomatrixserverlib.MustGetRoomVersion(rm.version).NewEventBuilder()
	empty := ""
	eb.SenderID, eb.RoomID, eb.Type, eb.StateKey, eb.Depth = p.mallory(), roomID, spec.MRoomCreate, &empty, 1
	eb.PrevEvents, eb.AuthEvents = []string{}, []string{}
	noErr(t, eb.SetContent(map[string]any{"creator": p.mallory(), "room_version": string(rm.version)}), "create content")
	create, err := eb.Build(time.Now(), p.Name, p.keyID, p.key)
	noErr(t, err, "build the create event")
	p.accepted(roomID, create)
	mallory := p.mallory()
	for _, s := range []evSpec{
		{Type: spec.MRoomMember, StateKey: &mallory, Content: map[string]any{"membership": "join"}},
		{Type: spec.MRoomPowerLevels, StateKey: &empty, Content: map[string]any{"users": map[string]int{mallory: 100}}},
		{Type: spec.MRoomJoinRules, StateKey: &empty, Content: map[string]any{"join_rule": "public"}},
		{Type: spec.MRoomHistoryVisibility, StateKey: &empty, Content: map[string]any{"history_visibility": "shared"}},
	} {
		p.accepted(roomID, p.build(roomID, s))
	}
	return roomID
}

// beforeAnsweringJoin makes the peer run fn between storing a join to
// roomID and answering its send_join.
func (p *fedPeer) beforeAnsweringJoin(roomID string, fn func(join gomatrixserverlib.PDU)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.beforeJoinAnswer == nil {
		p.beforeJoinAnswer = map[string]func(gomatrixserverlib.PDU){}
	}
	p.beforeJoinAnswer[roomID] = fn
}

// makeJoin is GET /make_join/{roomID}/{userID} for a room the peer hosts:
// the join template on top of its latest event (Server-Server API
// §"Joining Rooms").
func (p *fedPeer) makeJoin(w http.ResponseWriter, r *http.Request) {
	roomID, userID := r.PathValue("roomID"), r.PathValue("userID")
	p.mu.Lock()
	rm := p.rooms[roomID]
	var state []gomatrixserverlib.PDU
	var proto gomatrixserverlib.ProtoEvent
	if rm != nil {
		for _, pdu := range rm.state {
			state = append(state, pdu)
		}
		proto = gomatrixserverlib.ProtoEvent{SenderID: userID, RoomID: roomID, Type: spec.MRoomMember, StateKey: &userID,
			PrevEvents: []string{rm.latest.EventID()}, Depth: rm.latest.Depth() + 1, Content: spec.RawJSON(`{"membership":"join"}`)}
	}
	p.mu.Unlock()
	if rm == nil {
		notFound(w, r)
		return
	}
	needed, err := gomatrixserverlib.StateNeededForProtoEvent(&proto)
	if err == nil {
		var auth *gomatrixserverlib.AuthEvents
		if auth, err = gomatrixserverlib.NewAuthEvents(state); err == nil {
			proto.AuthEvents, err = needed.AuthEventReferences(auth)
		}
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writePeerJSON(w, http.StatusOK, fclient.RespMakeJoin{JoinEvent: proto, RoomVersion: rm.version})
}

// sendJoin is PUT /v2/send_join/{roomID}/{eventID}: the peer stores the
// join, runs what beforeAnsweringJoin set, then answers with the state
// before the join and its auth chain (all of it state in these rooms).
func (p *fedPeer) sendJoin(w http.ResponseWriter, r *http.Request) {
	roomID := r.PathValue("roomID")
	raw, _ := io.ReadAll(r.Body)
	p.mu.Lock()
	rm := p.rooms[roomID]
	var state []gomatrixserverlib.PDU
	var join gomatrixserverlib.PDU
	var err error
	if rm != nil {
		join, err = gomatrixserverlib.MustGetRoomVersion(rm.version).NewEventFromUntrustedJSON(raw)
		if err == nil {
			for _, pdu := range rm.state {
				state = append(state, pdu)
			}
			rm.add(join)
		}
	}
	fn := p.beforeJoinAnswer[roomID]
	p.mu.Unlock()
	if rm == nil {
		notFound(w, r)
		return
	}
	if err != nil {
		writePeerJSON(w, http.StatusBadRequest, map[string]string{"errcode": "M_BAD_JSON", "error": err.Error()})
		return
	}
	if fn != nil {
		fn(join)
	}
	events := gomatrixserverlib.NewEventJSONsFromEvents(state)
	writePeerJSON(w, http.StatusOK, fclient.RespSendJoin{StateEvents: events, AuthEvents: events, Origin: p.Name})
}

// TestJoinRemoteRoomEventSentDuringJoin: bob@hs1 joins a room the peer
// hosts. The peer stores his join and, before answering send_join, sends
// hs1 mallory's next message (built on bob's join), as a resident server
// does when its room is busy. hs1 answers {} for it, and bob's /messages
// has it after his join.
func TestJoinRemoteRoomEventSentDuringJoin(t *testing.T) {
	t.Parallel()
	peer, hs1 := startWithPeer(t, false)
	bob := hs1.Register("bob")
	roomID := peer.hostRoom()
	var msg gomatrixserverlib.PDU
	var code int
	var results map[string]fclient.PDUResult
	var sendErr error
	peer.beforeAnsweringJoin(roomID, func(join gomatrixserverlib.PDU) {
		msg = peer.build(roomID, evSpec{Type: "m.room.message", Prevs: []string{join.EventID()},
			Content: map[string]any{"msgtype": "m.text", "body": "ring ring"}})
		code, results, sendErr = peer.trySend(peer.txnID(), msg.JSON())
		peer.accepted(roomID, msg)
	})
	if _, err := bob.JoinRoom(ctx(t), roomID, &mautrix.ReqJoinRoom{Via: []string{peerName}}); err != nil {
		t.Fatalf("join the peer's room: %v", err)
	}
	if sendErr != nil || code != http.StatusOK {
		t.Fatalf("/send during the join: HTTP %d, %v", code, sendErr)
	}
	if res, ok := results[msg.EventID()]; !ok || res.Error != "" {
		t.Errorf("/send answer for the message during the join: %+v (present %v), want {}", res, ok)
	}
	page, err := bob.Messages(ctx(t), id.RoomID(roomID), "", "", mautrix.DirectionBackward, nil, 20)
	if err != nil {
		t.Fatalf("/messages: %v", err)
	}
	var timeline []string
	found := false
	for _, ev := range page.Chunk {
		timeline = append(timeline, string(ev.Type.Type)+" "+ev.ID.String())
		if ev.ID.String() == msg.EventID() {
			found = true
		}
	}
	if !found {
		raw, _ := json.Marshal(timeline)
		t.Errorf("bob's /messages after the join lacks the message sent during it (%s): %s", msg.EventID(), raw)
	}
}
