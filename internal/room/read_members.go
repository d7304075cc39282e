package room

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// Membership of a user in a room as kept in the members index: the
// membership string and the stream position of the change, so /sync can
// tell which rooms a user joined, left or was invited to since a token.
type Membership struct {
	RoomID     string
	RoomNID    uint64
	Membership string // join, invite, leave, ban, knock
	Pos        uint64
	Forgotten  bool
}

// members index value: pos(8) forgotten(1) membership.
// A member event that keeps the membership (a profile change) keeps the
// position of the original change.
func setMembership(tx *store.Tx, userID string, roomNID uint64, membership string, pos uint64) error {
	if old := tx.Get(store.Members, memberKey(userID, roomNID)); len(old) >= 9 && string(old[9:]) == membership {
		return nil
	}
	v := append(store.PutU64(pos), 0)
	v = append(v, membership...)
	return tx.Put(store.Members, memberKey(userID, roomNID), v)
}

func memberKey(userID string, roomNID uint64) []byte {
	return append(store.Key(userID, ""), store.PutU64(roomNID)...)
}

// decodeMembership decodes a members index value. RoomID is left empty:
// resolving it costs a room record read that most callers do not need.
func decodeMembership(roomNID uint64, v []byte) Membership {
	m := Membership{RoomNID: roomNID}
	if len(v) >= 9 {
		m.Pos, m.Forgotten, m.Membership = store.U64(v), v[8] == 1, string(v[9:])
	}
	return m
}

// Memberships lists every room the user has a membership in.
func (e *Engine) Memberships(userID string) ([]Membership, error) {
	var out []Membership
	err := e.db.View(func(tx *store.Tx) error {
		out = memberships(tx, userID)
		for i := range out {
			info, err := roomInfoByNID(tx, out[i].RoomNID)
			if err != nil {
				return err
			}
			out[i].RoomID = info.ID
		}
		return nil
	})
	return out, err
}

func memberships(tx *store.Tx, userID string) []Membership {
	var out []Membership
	prefix := store.Key(userID, "")
	c := tx.Cursor(store.Members)
	for k, v := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
		out = append(out, decodeMembership(store.U64(k[len(prefix):]), v))
	}
	return out
}

// membershipIn returns the user's membership in a room ("" if none).
func membershipIn(tx *store.Tx, userID string, roomNID uint64) Membership {
	v := tx.Get(store.Members, memberKey(userID, roomNID))
	if v == nil {
		return Membership{RoomNID: roomNID}
	}
	return decodeMembership(roomNID, v)
}

// count adjusts the member counters for one membership.
func (info *Info) count(membership string, delta int) {
	switch membership {
	case "join":
		info.Joined += delta
	case "invite":
		info.Invited += delta
	}
}

// JoinedRooms returns the IDs of the rooms the user is joined to.
func (e *Engine) JoinedRooms(userID string) ([]string, error) {
	ms, err := e.Memberships(userID)
	out := []string{}
	for _, m := range ms {
		if m.Membership == "join" {
			out = append(out, m.RoomID)
		}
	}
	return out, err
}

// Forget hides a room the user has left from their future syncs
// (Client-Server API §"Leaving rooms": /forget).
func (e *Engine) Forget(ctx context.Context, userID, roomID string) error {
	return e.db.Update(ctx, func(tx *store.Tx) error {
		info, err := roomInfo(tx, roomID)
		if err != nil {
			return err
		}
		key := memberKey(userID, info.NID)
		v := tx.Get(store.Members, key)
		if v == nil {
			return matrixerr.NotFound("you have never been in this room")
		}
		m := decodeMembership(info.NID, v)
		if m.Membership == "join" || m.Membership == "invite" || m.Membership == "knock" {
			// The spec's 400 for "the user has not left the room".
			return matrixerr.Unknown("leave the room before forgetting it").WithStatus(http.StatusBadRequest)
		}
		nv := append([]byte(nil), v...)
		nv[8] = 1
		return tx.Put(store.Members, key, nv)
	})
}

// MemberEvents returns the room's m.room.member events, filtered by
// membership and not_membership (empty matches all) — the source of
// /members. The list is the state at position at (math.MaxUint64: now;
// 0, before the first event, is a valid position), and never later
// than the user's leave: a user who left sees the members as they were
// when they left. A position before the user's first membership counts as
// that membership's position, so a token from the start of their
// timeline (an initial sync's prev_batch) names the room as they found it.
func (e *Engine) MemberEvents(userID, roomID, membership, notMembership string, at uint64) ([]ClientEvent, error) {
	var out []ClientEvent
	err := e.db.View(func(tx *store.Tx) error {
		info, h, err := e.readable(tx, userID, roomID)
		if err != nil {
			return err
		}
		_, pos := h.bounds()
		if at < pos {
			pos = at
			if len(h.members) > 0 && pos < h.members[0].pos {
				pos = h.members[0].pos
			}
		}
		nids, err := e.stateNIDsAt(tx, info, pos)
		if err != nil {
			return err
		}
		for _, nid := range nids {
			ev, err := e.loadEvent(tx, nid)
			if err != nil {
				return err
			}
			if ev.PDU.Type() != "m.room.member" {
				continue
			}
			m, _ := ev.PDU.Membership()
			if (membership != "" && m != membership) || (notMembership != "" && m == notMembership) {
				continue
			}
			out = append(out, e.clientEvent(tx, ev, ClientView{}))
		}
		return nil
	})
	return out, err
}

// JoinedMember is one entry of /joined_members. Both fields are always
// present, null when unset, as Synapse answers and Complement ("joined_members
// fetches my membership") expects; the spec's schema has no null for them,
// but absent fields fail that test.
type JoinedMember struct {
	DisplayName *string `json:"display_name"`
	AvatarURL   *string `json:"avatar_url"`
}

// Name is the member's display name, "" if unset.
func (m JoinedMember) Name() string { return unsetAsEmpty(m.DisplayName) }

// Avatar is the member's avatar URL, "" if unset.
func (m JoinedMember) Avatar() string { return unsetAsEmpty(m.AvatarURL) }

func unsetAsEmpty(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// JoinedMembers returns the joined members and their room profiles.
func (e *Engine) JoinedMembers(userID, roomID string) (map[string]JoinedMember, error) {
	out := map[string]JoinedMember{}
	err := e.db.View(func(tx *store.Tx) error {
		info, err := roomInfo(tx, roomID)
		if err != nil {
			return err
		}
		if membershipIn(tx, userID, info.NID).Membership != "join" {
			return matrixerr.Forbidden("you are not joined to this room")
		}
		return eachCurrentState(tx, info.NID, "m.room.member\x00", func(_, sk string, nid uint64) error {
			ev, err := e.loadEvent(tx, nid)
			if err != nil {
				return err
			}
			var c struct {
				Membership  string  `json:"membership"`
				DisplayName *string `json:"displayname"`
				AvatarURL   *string `json:"avatar_url"`
			}
			json.Unmarshal(ev.PDU.Content(), &c)
			if c.Membership == "join" {
				out[sk] = JoinedMember{DisplayName: c.DisplayName, AvatarURL: c.AvatarURL}
			}
			return nil
		})
	})
	return out, err
}

// SharesRoom reports whether two users are joined to at least one common
// room (used by the user directory and presence).
func (e *Engine) SharesRoom(a, b string) bool {
	shared := false
	e.db.View(func(tx *store.Tx) error {
		for _, m := range memberships(tx, a) {
			if m.Membership == "join" && membershipIn(tx, b, m.RoomNID).Membership == "join" {
				shared = true
				return nil
			}
		}
		return nil
	})
	return shared
}
