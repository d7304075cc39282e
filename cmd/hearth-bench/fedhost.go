package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// The peer as a resident server: a room it hosts, and the Server-Server
// API calls a daemon makes to join it (make_join, send_join) and to fill
// in what it lacks afterwards (/event, /state_ids).

// hostRoom makes a public room on the peer (room version 10) with an
// admin and members joined users @u0…: create, the admin's join, power
// levels, public join rules, then one join each, every event on top of
// the previous one. It answers make_join and send_join for it from then
// on.
func (p *fedPeer) hostRoom(members int) (*peerRoom, error) {
	rm := newPeerRoom("!bench:"+string(p.name), gomatrixserverlib.RoomVersionV10)
	admin := "@admin:" + string(p.name)
	empty := ""
	steps := []struct {
		typ      string
		stateKey *string
		content  any
	}{
		{spec.MRoomCreate, &empty, map[string]any{"creator": admin, "room_version": string(rm.version)}},
		{spec.MRoomMember, &admin, map[string]any{"membership": "join"}},
		{spec.MRoomPowerLevels, &empty, map[string]any{"users": map[string]int{admin: 100}, "users_default": 0}},
		{spec.MRoomJoinRules, &empty, map[string]any{"join_rule": "public"}},
		{spec.MRoomHistoryVisibility, &empty, map[string]any{"history_visibility": "shared"}},
	}
	for _, s := range steps {
		if _, err := p.build(rm, admin, s.typ, s.stateKey, s.content); err != nil {
			return nil, err
		}
	}
	join := map[string]any{"membership": "join"}
	for i := range members {
		u := fmt.Sprintf("@u%d:%s", i, p.name)
		if _, err := p.build(rm, u, spec.MRoomMember, &u, join); err != nil {
			return nil, err
		}
	}
	p.mu.Lock()
	p.rooms[rm.id], p.hosted[rm.id] = rm, rm
	p.mu.Unlock()
	return rm, nil
}

// makeJoin answers GET make_join for a hosted room with a template on top
// of the room's latest event (Server-Server API §"Joining Rooms").
func (p *fedPeer) makeJoin(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	rm := p.hosted[r.PathValue("roomID")]
	p.mu.Unlock()
	if rm == nil {
		writeJSONResp(w, http.StatusNotFound, map[string]string{"errcode": "M_NOT_FOUND", "error": "bench peer: no such room"})
		return
	}
	userID := r.PathValue("userID")
	pe := gomatrixserverlib.ProtoEvent{SenderID: userID, RoomID: rm.id, Type: spec.MRoomMember, StateKey: &userID}
	pe.SetContent(map[string]any{"membership": "join"})
	p.mu.Lock()
	needed, _ := gomatrixserverlib.StateNeededForProtoEvent(&pe)
	pe.AuthEvents, _ = needed.AuthEventReferences(rm.auth)
	pe.PrevEvents, pe.Depth = []string{rm.latest.EventID()}, rm.latest.Depth()+1
	p.mu.Unlock()
	writeJSONResp(w, http.StatusOK, fclient.RespMakeJoin{JoinEvent: pe, RoomVersion: rm.version})
}

// sendJoin answers PUT send_join v2: it countersigns the join, answers
// with the state before it and that state's auth chain, and adds the join
// to the room.
func (p *fedPeer) sendJoin(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	rm := p.hosted[r.PathValue("roomID")]
	p.mu.Unlock()
	body, err := io.ReadAll(r.Body)
	if rm == nil || err != nil {
		writeJSONResp(w, http.StatusNotFound, map[string]string{"errcode": "M_NOT_FOUND", "error": "bench peer: no such room"})
		return
	}
	join, err := gomatrixserverlib.MustGetRoomVersion(rm.version).NewEventFromUntrustedJSON(body)
	if err != nil || join.EventID() != r.PathValue("eventID") {
		writeJSONResp(w, http.StatusBadRequest, map[string]string{"errcode": "M_BAD_JSON", "error": fmt.Sprint("bench peer: bad join: ", err)})
		return
	}
	join = join.Sign(string(p.name), p.keyID, p.key)
	p.mu.Lock()
	resp := fclient.RespSendJoin{Origin: p.name, Event: join.JSON(), ServersInRoom: []string{string(p.name)}}
	chain := map[string]bool{}
	for _, pdu := range rm.state {
		resp.StateEvents = append(resp.StateEvents, pdu.JSON())
		for _, id := range pdu.AuthEventIDs() {
			chain[id] = true
		}
	}
	// Every auth event here is itself state with auth events among the
	// state's (create, admin join, power levels, join rules), so one
	// level is the whole chain.
	for id := range chain {
		resp.AuthEvents = append(resp.AuthEvents, rm.byID[id].JSON())
	}
	rm.add(join)
	p.mu.Unlock()
	writeJSONResp(w, http.StatusOK, &resp)
}

// event answers GET /event/{eventID} for any room the peer knows.
func (p *fedPeer) event(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	var pdu gomatrixserverlib.PDU
	for _, rm := range p.rooms {
		if pdu = rm.byID[r.PathValue("eventID")]; pdu != nil {
			break
		}
	}
	p.mu.Unlock()
	if pdu == nil {
		writeJSONResp(w, http.StatusNotFound, map[string]string{"errcode": "M_NOT_FOUND", "error": "bench peer: no such event"})
		return
	}
	writeJSONResp(w, http.StatusOK, gomatrixserverlib.Transaction{Origin: p.name, OriginServerTS: spec.AsTimestamp(time.Now()),
		PDUs: []json.RawMessage{pdu.JSON()}})
}

// stateIDs answers GET /state_ids with the hosted room's current state
// (the bench asks only about its latest event).
func (p *fedPeer) stateIDs(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	rm := p.hosted[r.PathValue("roomID")]
	if rm == nil {
		writeJSONResp(w, http.StatusNotFound, map[string]string{"errcode": "M_NOT_FOUND", "error": "bench peer: no such room"})
		return
	}
	res := fclient.RespStateIDs{StateEventIDs: []string{}, AuthEventIDs: []string{}}
	chain := map[string]bool{}
	for _, pdu := range rm.state {
		res.StateEventIDs = append(res.StateEventIDs, pdu.EventID())
		for _, id := range pdu.AuthEventIDs() {
			chain[id] = true
		}
	}
	for id := range chain {
		res.AuthEventIDs = append(res.AuthEventIDs, id)
	}
	writeJSONResp(w, http.StatusOK, res)
}
