package room

import (
	"encoding/json"
	"sort"

	"github.com/hearth-chat/hearth/internal/store"
)

// SpaceRoom is a room as the space hierarchy describes it: the room
// summary (room_summary.yaml) with the space fields, the same on the
// client API (GET /rooms/{roomId}/hierarchy) and over federation (GET
// /hierarchy/{roomId}).
type SpaceRoom struct {
	PublicRoom
	ChildrenState  []SpaceChild `json:"children_state"`
	AllowedRoomIDs []string     `json:"allowed_room_ids,omitempty"`
	Encryption     string       `json:"encryption,omitempty"`
	RoomVersion    string       `json:"room_version,omitempty"`
}

// SpaceChild is an m.space.child event as a stripped state event with its
// origin_server_ts.
type SpaceChild struct {
	Type           string          `json:"type"`
	StateKey       string          `json:"state_key"`
	Content        json.RawMessage `json:"content"`
	Sender         string          `json:"sender"`
	OriginServerTS int64           `json:"origin_server_ts"`
}

// SpaceHierarchy is the federation answer for one space (Server-Server
// API GET /hierarchy/{roomId}).
type SpaceHierarchy struct {
	Room                 *SpaceRoom   `json:"room"`
	Children             []*SpaceRoom `json:"children"`
	InaccessibleChildren []string     `json:"inaccessible_children"`
}

type childContent struct {
	Via       []string `json:"via"`
	Order     *string  `json:"order"`
	Suggested bool     `json:"suggested"`
}

func (c SpaceChild) parsed() childContent {
	var cc childContent
	json.Unmarshal(c.Content, &cc)
	return cc
}

// Via lists the servers to reach the child through; a child without any
// is no child (Client-Server API §"m.space.child").
func (c SpaceChild) Via() []string { return c.parsed().Via }

// Suggested reports the child's suggested flag.
func (c SpaceChild) Suggested() bool { return c.parsed().Suggested }

// order is the child's valid order string: at most 50 characters of
// printable ASCII (0x20-0x7E), else none.
func (c SpaceChild) order() (string, bool) {
	o := c.parsed().Order
	if o == nil || len(*o) > 50 {
		return "", false
	}
	for i := 0; i < len(*o); i++ {
		if (*o)[i] < 0x20 || (*o)[i] > 0x7E {
			return "", false
		}
	}
	return *o, true
}

// SortChildren puts children in the spec's order (Client-Server API
// §"Ordering of children within a space"): by order, those without one
// last, then by the m.space.child event's origin_server_ts, then room ID.
func SortChildren(children []SpaceChild) {
	sort.SliceStable(children, func(i, j int) bool {
		a, b := children[i], children[j]
		oa, hasA := a.order()
		ob, hasB := b.order()
		if hasA != hasB {
			return hasA
		}
		if hasA && oa != ob {
			return oa < ob
		}
		if a.OriginServerTS != b.OriginServerTS {
			return a.OriginServerTS < b.OriginServerTS
		}
		return a.StateKey < b.StateKey
	})
}

// SpaceSummary describes a room from its current state, nil if no local
// user is joined to it: only then is the state this server holds known to
// be current, and the caller asks another server instead. Children
// (m.space.child events with via servers, the suggested ones only if
// suggestedOnly) are listed for spaces only, in the spec's order.
func (e *Engine) SpaceSummary(roomID string, suggestedOnly bool) (*SpaceRoom, error) {
	var sr *SpaceRoom
	err := e.db.View(func(tx *store.Tx) error {
		info, err := roomInfo(tx, roomID)
		if err != nil || !e.localJoined(tx, info.NID) {
			return nil
		}
		pr, err := e.publicRoom(tx, info)
		if err != nil {
			return err
		}
		sr = &SpaceRoom{PublicRoom: pr, ChildrenState: []SpaceChild{}, RoomVersion: string(info.Version)}
		if ev, err := e.currentStateEvent(tx, info.NID, "m.room.encryption", ""); err == nil && ev != nil {
			var c struct {
				Algorithm string `json:"algorithm"`
			}
			json.Unmarshal(ev.PDU.Content(), &c)
			sr.Encryption = c.Algorithm
		}
		if ev, err := e.currentStateEvent(tx, info.NID, "m.room.join_rules", ""); err == nil && ev != nil {
			_, sr.AllowedRoomIDs = parseJoinRule(ev.PDU.Content())
		}
		if sr.RoomType != "m.space" {
			return nil
		}
		return eachCurrentState(tx, info.NID, "m.space.child\x00", func(_, sk string, nid uint64) error {
			ev, err := e.loadEvent(tx, nid)
			if err != nil {
				return err
			}
			c := SpaceChild{Type: "m.space.child", StateKey: sk, Content: json.RawMessage(ev.PDU.Content()),
				Sender: string(ev.PDU.SenderID()), OriginServerTS: int64(ev.PDU.OriginServerTS())}
			if len(c.Via()) > 0 && (!suggestedOnly || c.Suggested()) {
				sr.ChildrenState = append(sr.ChildrenState, c)
			}
			return nil
		})
	})
	if sr != nil {
		SortChildren(sr.ChildrenState)
	}
	return sr, err
}

// SpaceAccessible reports whether a local user may see a room in a space
// hierarchy (Client-Server API GET /hierarchy, "rooms"): they are joined
// or invited, or the room is public, knockable or world-readable, or it
// is restricted and they are joined to one of the allowed rooms. A banned
// user sees nothing of it. sr may come from another server; membership is
// what this server knows.
func (e *Engine) SpaceAccessible(userID string, sr *SpaceRoom) bool {
	ok := false
	e.db.View(func(tx *store.Tx) error {
		joinedTo := func(roomID string) string {
			nid := store.U64(tx.Get(store.Rooms, []byte(roomID)))
			if nid == 0 {
				return ""
			}
			return membershipIn(tx, userID, nid).Membership
		}
		switch joinedTo(sr.RoomID) {
		case "join", "invite":
			ok = true
			return nil
		case "ban":
			return nil
		}
		switch sr.JoinRule {
		case "public", "knock", "knock_restricted":
			ok = true
		case "restricted":
			for _, id := range sr.AllowedRoomIDs {
				if joinedTo(id) == "join" {
					ok = true
				}
			}
		}
		ok = ok || sr.WorldReadable
		return nil
	})
	return ok
}

// RoomMembership is a user's membership in a room as this server knows it
// (join, invite, knock, leave, ban), "" when it knows none: the caller's
// membership in a room summary (Client-Server API GET /room_summary).
func (e *Engine) RoomMembership(userID, roomID string) string {
	m := ""
	e.db.View(func(tx *store.Tx) error {
		if nid := store.U64(tx.Get(store.Rooms, []byte(roomID))); nid != 0 {
			m = membershipIn(tx, userID, nid).Membership
		}
		return nil
	})
	return m
}

// InviteSummary describes a room no local user is joined to from the
// stripped state that came with userID's invite or knock
// (invite_room_state, knock_room_state): nil if they have neither, or no
// state came with it. It may be partial or out of date, as MSC3266
// allows for invited and knocking users (GET /room_summary); the member
// count is that of the joined members the state names, the inviter at
// least.
func (e *Engine) InviteSummary(userID, roomID string) (*SpaceRoom, error) {
	var sr *SpaceRoom
	err := e.db.View(func(tx *store.Tx) error {
		info, err := roomInfo(tx, roomID)
		if err != nil || e.localJoined(tx, info.NID) {
			return nil
		}
		ev, err := e.currentStateEvent(tx, info.NID, "m.room.member", userID)
		if err != nil || ev == nil {
			return err
		}
		if m, _ := ev.PDU.Membership(); m != "invite" && m != "knock" {
			return nil
		}
		state := remoteRoomState(ev)
		if len(state) == 0 {
			return nil
		}
		sr = &SpaceRoom{PublicRoom: PublicRoom{RoomID: roomID}, ChildrenState: []SpaceChild{}, RoomVersion: string(info.Version)}
		for _, raw := range state {
			sr.addStripped(raw)
		}
		return nil
	})
	return sr, err
}

// addStripped takes one stripped state event into the summary.
func (sr *SpaceRoom) addStripped(raw json.RawMessage) {
	var ev struct {
		Type     string          `json:"type"`
		StateKey *string         `json:"state_key"`
		Content  json.RawMessage `json:"content"`
	}
	if json.Unmarshal(raw, &ev) != nil || ev.StateKey == nil {
		return
	}
	var c struct {
		Name              string `json:"name"`
		Topic             string `json:"topic"`
		Alias             string `json:"alias"`
		URL               string `json:"url"`
		Type              string `json:"type"`
		RoomVersion       string `json:"room_version"`
		Algorithm         string `json:"algorithm"`
		HistoryVisibility string `json:"history_visibility"`
		GuestAccess       string `json:"guest_access"`
		Membership        string `json:"membership"`
	}
	json.Unmarshal(ev.Content, &c)
	switch {
	case *ev.StateKey != "" && ev.Type != "m.room.member":
	case ev.Type == "m.room.name":
		sr.Name = c.Name
	case ev.Type == "m.room.topic":
		sr.Topic = c.Topic
	case ev.Type == "m.room.canonical_alias":
		sr.CanonicalAlias = c.Alias
	case ev.Type == "m.room.avatar":
		sr.AvatarURL = c.URL
	case ev.Type == "m.room.create":
		sr.RoomType = c.Type
		if c.RoomVersion != "" {
			sr.RoomVersion = c.RoomVersion
		}
	case ev.Type == "m.room.encryption":
		sr.Encryption = c.Algorithm
	case ev.Type == "m.room.history_visibility":
		sr.WorldReadable = c.HistoryVisibility == "world_readable"
	case ev.Type == "m.room.guest_access":
		sr.GuestCanJoin = c.GuestAccess == "can_join"
	case ev.Type == "m.room.join_rules":
		sr.JoinRule, sr.AllowedRoomIDs = parseJoinRule(ev.Content)
	case ev.Type == "m.room.member" && c.Membership == "join":
		sr.NumJoinedMembers++
	}
}
