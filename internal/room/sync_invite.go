package room

import (
	"encoding/json"
	"sort"

	"github.com/hearth-chat/hearth/internal/store"
)

// The rooms.invite, rooms.knock and rooms.leave sections of /sync
// (Client-Server API §"Syncing"); rooms.join is sync.go's.

// syncInvite is a room in rooms.invite, or (the same shape) rooms.knock;
// nil for an invite from an ignored user, or one req.HideInvite or
// req.HideInviteIn hides.
func (e *Engine) syncInvite(tx *store.Tx, req SyncRequest, info *Info, membership string) (*InvitedRoom, error) {
	ir := &InvitedRoom{}
	for _, typ := range strippedTypes {
		ev, err := e.currentStateEvent(tx, info.NID, typ, "")
		if err != nil {
			return nil, err
		}
		if ev != nil {
			ir.InviteState = append(ir.InviteState, strippedState(ev))
		}
	}
	// The invite itself and its sender's membership tell the client who
	// invited them.
	inv, err := e.currentStateEvent(tx, info.NID, "m.room.member", req.UserID)
	if err != nil {
		return nil, err
	}
	if inv != nil && req.Ignored[string(inv.PDU.SenderID())] {
		return nil, nil
	}
	if inv != nil && membership == "invite" && req.hidesInvite(tx, string(inv.PDU.SenderID())) {
		return nil, nil
	}
	if inv != nil {
		if len(ir.InviteState) == 0 {
			// A room known only by its invite: the inviting server's
			// stripped state stands in for the state.
			ir.InviteState = remoteRoomState(inv)
		} else if sender, err := e.currentStateEvent(tx, info.NID, "m.room.member", string(inv.PDU.SenderID())); err == nil && sender != nil {
			ir.InviteState = append(ir.InviteState, strippedState(sender))
		}
		b, _ := json.Marshal(e.clientEvent(tx, inv, ClientView{Viewer: req.UserID, OmitRoomID: true}))
		ir.InviteState = append(ir.InviteState, b)
	}
	return ir, nil
}

// strippedState is the StrippedStateEvent shape (Client-Server API
// §"Stripped state"), except for the create event, which is given whole
// (MSC4311, spec v1.16) so a client can check the room it describes.
func strippedState(ev *Event) json.RawMessage {
	if ev.PDU.Type() == "m.room.create" {
		return json.RawMessage(ev.PDU.JSON())
	}
	b, _ := json.Marshal(map[string]any{
		"type": ev.PDU.Type(), "state_key": *ev.PDU.StateKey(),
		"sender": string(ev.PDU.SenderID()), "content": json.RawMessage(ev.PDU.Content()),
	})
	return b
}

func (e *Engine) syncLeft(tx *store.Tx, req SyncRequest, info *Info, m Membership) (*LeftRoom, error) {
	tl, err := e.syncTimeline(tx, req, info, req.Since, m.Pos)
	if err != nil {
		return nil, err
	}
	lr := &LeftRoom{Timeline: tl}
	if req.StateAfter {
		// MSC4222: the state at the end of the timeline, the user's leave
		// included; all of it on an initial sync, else what changed since
		// the token.
		end, err := e.stateMapAt(tx, info, m.Pos)
		if err != nil {
			return nil, err
		}
		for _, nid := range end {
			if nid > m.Pos || (req.Since != 0 && nid <= req.Since) {
				continue
			}
			ev, err := e.loadEvent(tx, nid)
			if err != nil {
				return nil, err
			}
			lr.State = append(lr.State, e.clientEvent(tx, ev, ClientView{Viewer: req.UserID, OmitRoomID: true}))
		}
		sort.Slice(lr.State, func(i, j int) bool {
			if lr.State[i].Type != lr.State[j].Type {
				return lr.State[i].Type < lr.State[j].Type
			}
			return *lr.State[i].StateKey < *lr.State[j].StateKey
		})
		return lr, nil
	}
	if tl.Limited || req.Since == 0 {
		nids, err := e.stateNIDsAt(tx, info, tl.PrevBatch)
		if err != nil {
			return nil, err
		}
		for _, nid := range nids {
			ev, err := e.loadEvent(tx, nid)
			if err != nil {
				return nil, err
			}
			lr.State = append(lr.State, e.clientEvent(tx, ev, ClientView{Viewer: req.UserID, OmitRoomID: true}))
		}
	}
	return lr, nil
}

// hidesInvite asks HideInvite, else HideInviteIn inside tx.
func (req SyncRequest) hidesInvite(tx *store.Tx, sender string) bool {
	switch {
	case req.HideInvite != nil:
		return req.HideInvite(sender)
	case req.HideInviteIn != nil:
		return req.HideInviteIn(tx, sender)
	}
	return false
}
