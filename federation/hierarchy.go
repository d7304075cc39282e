package federation

import (
	"encoding/json"
	"net/http"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
)

// The space hierarchy over federation (Server-Server API §"Spaces", GET
// /hierarchy/{roomId}): the space's summary with its m.space.child
// events, and the children this server is in, summarised if the
// requesting server could peek or join them. It does not paginate and
// does not recurse past the first level; the requesting server asks again
// for deeper spaces. Only rooms with a local member are described: their
// current state is what this server knows to be true.

func (s *Service) hierarchyRoutes() {
	s.handle("GET /_matrix/federation/v1/hierarchy/{roomID}", s.hierarchy)
}

// spaceRoom is a room summary (room_summary.yaml) with the space fields.
type spaceRoom struct {
	room.PublicRoom
	ChildrenState  []strippedChild `json:"children_state"`
	AllowedRoomIDs []string        `json:"allowed_room_ids,omitempty"`
	Encryption     string          `json:"encryption,omitempty"`
	RoomVersion    string          `json:"room_version,omitempty"`
}

type strippedChild struct {
	Type           string          `json:"type"`
	StateKey       string          `json:"state_key"`
	Content        json.RawMessage `json:"content"`
	Sender         string          `json:"sender"`
	OriginServerTS int64           `json:"origin_server_ts"`
}

func (s *Service) hierarchy(w http.ResponseWriter, r *request) {
	suggestedOnly := r.URL.Query().Get("suggested_only") == "true"
	root, accessible := s.summarise(r.PathValue("roomID"), r.origin, suggestedOnly)
	if root == nil || !accessible {
		matrixerr.Write(w, matrixerr.NotFound("room not known here, or not open to your server"))
		return
	}
	res := struct {
		Room                 *spaceRoom   `json:"room"`
		Children             []*spaceRoom `json:"children"`
		InaccessibleChildren []string     `json:"inaccessible_children"`
	}{Room: root, Children: []*spaceRoom{}, InaccessibleChildren: []string{}}
	for _, c := range root.ChildrenState {
		child, ok := s.summarise(c.StateKey, r.origin, suggestedOnly)
		switch {
		case child == nil:
			// Not known here: the requester asks the via servers.
		case ok:
			res.Children = append(res.Children, child)
		default:
			res.InaccessibleChildren = append(res.InaccessibleChildren, c.StateKey)
		}
	}
	writeJSON(w, http.StatusOK, res)
}

// summarise describes a room this server is in, and says whether origin
// could peek or join it: public, knockable or world-readable rooms,
// restricted rooms (the requester checks allowed_room_ids), and rooms
// origin is already in, unless the room's ACL denies origin. nil means
// this server cannot describe the room.
func (s *Service) summarise(roomID string, origin spec.ServerName, suggestedOnly bool) (*spaceRoom, bool) {
	locals := s.cfg.Rooms.LocalJoinedMembers(roomID)
	if len(locals) == 0 {
		return nil, false
	}
	state, err := s.cfg.Rooms.State(*locals[0].StateKey(), roomID)
	if err != nil {
		return nil, false
	}
	sr := &spaceRoom{PublicRoom: room.PublicRoom{RoomID: roomID}, ChildrenState: []strippedChild{}}
	if v, err := s.cfg.Rooms.RoomVersion(roomID); err == nil {
		sr.RoomVersion = string(v)
	}
	originIn := false
	for _, ev := range state {
		var c map[string]any
		if json.Unmarshal(ev.Content, &c) != nil || ev.StateKey == nil {
			continue
		}
		str := func(k string) string { v, _ := c[k].(string); return v }
		switch ev.Type {
		case "m.room.name":
			sr.Name = str("name")
		case "m.room.topic":
			sr.Topic = str("topic")
		case "m.room.canonical_alias":
			sr.CanonicalAlias = str("alias")
		case "m.room.avatar":
			sr.AvatarURL = str("url")
		case "m.room.history_visibility":
			sr.WorldReadable = str("history_visibility") == "world_readable"
		case "m.room.guest_access":
			sr.GuestCanJoin = str("guest_access") == "can_join"
		case "m.room.create":
			sr.RoomType = str("type")
		case "m.room.encryption":
			sr.Encryption = str("algorithm")
		case "m.room.join_rules":
			sr.JoinRule = str("join_rule")
			sr.AllowedRoomIDs = allowedRooms(c)
		case "m.room.member":
			if str("membership") == "join" {
				sr.NumJoinedMembers++
				originIn = originIn || serverOf(*ev.StateKey) == string(origin)
			}
		case "m.space.child":
			// A child without via servers is no child (Client-Server API
			// §"Spaces").
			via, _ := c["via"].([]any)
			suggested, _ := c["suggested"].(bool)
			if len(via) > 0 && (!suggestedOnly || suggested) {
				sr.ChildrenState = append(sr.ChildrenState, strippedChild{Type: ev.Type, StateKey: *ev.StateKey,
					Content: ev.Content, Sender: ev.Sender, OriginServerTS: ev.OriginServerTS})
			}
		}
	}
	open := false
	switch sr.JoinRule {
	case "public", "knock", "restricted", "knock_restricted":
		open = true
	}
	accessible := (open || sr.WorldReadable || originIn) && s.aclAllows(roomID, origin)
	return sr, accessible
}

// allowedRooms lists the rooms whose members may join a restricted room.
func allowedRooms(joinRules map[string]any) []string {
	allow, _ := joinRules["allow"].([]any)
	var out []string
	for _, a := range allow {
		m, _ := a.(map[string]any)
		if id, _ := m["room_id"].(string); m["type"] == "m.room_membership" && id != "" {
			out = append(out, id)
		}
	}
	return out
}
