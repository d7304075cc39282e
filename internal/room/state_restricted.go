package room

import (
	"encoding/json"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// Restricted rooms (Client-Server API §"Restricted rooms", Server-Server
// API §"Restricted rooms"; join rule restricted from room version 8,
// knock_restricted from 10): a user joined to one of the rooms the join
// rule's allow list names may join without an invite, when a user of a
// resident server who may invite vouches for the join in the member
// event's join_authorised_via_users_server. That user must be chosen by a
// server that can see both rooms, which is the decision made here, both
// for local joins and for make_join from other servers.

// JoinAuthoriser decides whether userID may join the room through its
// restricted join rule and which local user authorises it. It returns ""
// and no error when no authoriser is needed: the rule is not restricted,
// or the user is already invited or joined (the auth rules then treat the
// room as invite-only). Otherwise it returns a local joined user with the
// power to invite (a creator first, then the highest level), or:
//   - M_FORBIDDEN when this server is in every allowed room and the user
//     is joined to none of them;
//   - M_UNABLE_TO_AUTHORISE_JOIN when the user is in none of the allowed
//     rooms this server is in, but it is not in all of them, so it cannot
//     tell;
//   - M_UNABLE_TO_GRANT_JOIN when the user qualifies but no local user
//     may invite, so another resident server must authorise the join.
func (e *Engine) JoinAuthoriser(roomID, userID string) (string, error) {
	var via string
	err := e.db.View(func(tx *store.Tx) error {
		info, err := roomInfo(tx, roomID)
		if err != nil {
			return err
		}
		via, err = e.joinAuthoriser(tx, info, userID)
		return err
	})
	return via, err
}

func (e *Engine) joinAuthoriser(tx *store.Tx, info *Info, userID string) (string, error) {
	ver, err := gomatrixserverlib.GetRoomVersion(info.Version)
	if err != nil {
		return "", err
	}
	if ver.CheckRestrictedJoinsAllowed() != nil {
		return "", nil
	}
	jr, err := e.currentStateEvent(tx, info.NID, "m.room.join_rules", "")
	if err != nil || jr == nil {
		return "", err
	}
	rule, allowed := parseJoinRule(jr.PDU.Content())
	if rule != "restricted" && rule != "knock_restricted" {
		return "", nil
	}
	if cur, err := e.currentStateEvent(tx, info.NID, "m.room.member", userID); err != nil {
		return "", err
	} else if cur != nil {
		if m, _ := cur.PDU.Membership(); m == "join" || m == "invite" {
			return "", nil
		}
	}
	qualifies, unknown := false, false
	for _, roomID := range allowed {
		other, err := roomInfo(tx, roomID)
		if err != nil || !e.localJoined(tx, other.NID) {
			// Without a local member this server's view of that room's
			// memberships may be stale or missing.
			unknown = true
			continue
		}
		if ev, err := e.currentStateEvent(tx, other.NID, "m.room.member", userID); err == nil && ev != nil {
			if m, _ := ev.PDU.Membership(); m == "join" {
				qualifies = true
				break
			}
		}
	}
	if !qualifies {
		if unknown {
			return "", matrixerr.UnableToAuthoriseJoin("this server is not in every room the join rule allows; try another server in the room")
		}
		return "", matrixerr.Forbidden("you are not joined to any room this room's join rule allows")
	}
	pl, err := e.powerLevels(tx, info)
	if err != nil {
		return "", err
	}
	if pl == nil {
		return "", matrixerr.UnableToGrantJoin("the room has no create event here")
	}
	best, bestLevel := "", int64(0)
	eachCurrentState(tx, info.NID, "m.room.member\x00", func(_, sk string, _ uint64) error {
		if serverOf(sk) != string(e.serverName) || membershipIn(tx, sk, info.NID).Membership != "join" {
			return nil
		}
		// State keys come in order, so among equals the first one wins.
		if l := pl.level(sk); l >= pl.Invite && (best == "" || l > bestLevel) {
			best, bestLevel = sk, l
		}
		return nil
	})
	if best == "" {
		return "", matrixerr.UnableToGrantJoin("no user of this server in the room may invite; try another server in the room")
	}
	return best, nil
}

// parseJoinRule reads a join_rules content leniently: an allow list that
// is not a list, and entries that are not m.room_membership conditions
// with a room ID, count for nothing (the join then needs an invite), as
// the spec's auth rules and Complement's "mangled join rules" expect.
func parseJoinRule(content []byte) (rule string, allowedRooms []string) {
	var c struct {
		JoinRule string          `json:"join_rule"`
		Allow    json.RawMessage `json:"allow"`
	}
	if json.Unmarshal(content, &c) != nil {
		return "", nil
	}
	var entries []json.RawMessage
	if json.Unmarshal(c.Allow, &entries) != nil {
		return c.JoinRule, nil
	}
	for _, raw := range entries {
		var a struct {
			Type   string `json:"type"`
			RoomID string `json:"room_id"`
		}
		if json.Unmarshal(raw, &a) == nil && a.Type == "m.room_membership" && a.RoomID != "" {
			allowedRooms = append(allowedRooms, a.RoomID)
		}
	}
	return c.JoinRule, allowedRooms
}
