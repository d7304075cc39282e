package room

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"sort"
	"strconv"
	"strings"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

const randomChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func randomID(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = randomChars[int(b[i])%len(randomChars)]
	}
	return string(b)
}

type aliasRecord struct {
	RoomID  string `json:"room_id"`
	Creator string `json:"creator"`
}

// validateAlias checks the grammar of a local alias (Appendices §"Room Aliases").
func validateAlias(alias, serverName string) error {
	local, server, ok := strings.Cut(strings.TrimPrefix(alias, "#"), ":")
	if !strings.HasPrefix(alias, "#") || !ok || local == "" || len(alias) > 255 || strings.ContainsAny(local, ": \x00") {
		return matrixerr.InvalidParam("invalid room alias " + alias)
	}
	if server != serverName {
		return matrixerr.InvalidParam("room aliases must be on this server (" + serverName + ")")
	}
	return nil
}

func putAlias(tx *store.Tx, alias, roomID, creator string) error {
	b, _ := json.Marshal(aliasRecord{RoomID: roomID, Creator: creator})
	return tx.Put(store.Aliases, []byte(alias), b)
}

// SetAlias maps a local alias to a room (PUT /directory/room/{alias}).
func (e *Engine) SetAlias(ctx context.Context, userID, alias, roomID string) error {
	if err := validateAlias(alias, string(e.serverName)); err != nil {
		return err
	}
	return e.db.Update(ctx, func(tx *store.Tx) error {
		if _, err := roomInfo(tx, roomID); err != nil {
			return err
		}
		if tx.Get(store.Aliases, []byte(alias)) != nil {
			return matrixerr.Conflict("room alias " + alias + " already exists")
		}
		return putAlias(tx, alias, roomID, userID)
	})
}

// ResolveAlias returns the room an alias points to, and the servers to
// join it through (GET /directory/room/{alias}).
func (e *Engine) ResolveAlias(alias string) (string, []string, error) {
	var rec aliasRecord
	err := e.db.View(func(tx *store.Tx) error {
		b := tx.Get(store.Aliases, []byte(alias))
		if b == nil {
			return matrixerr.NotFound("room alias " + alias + " not found")
		}
		return json.Unmarshal(b, &rec)
	})
	return rec.RoomID, []string{string(e.serverName)}, err
}

// DeleteAlias removes an alias; its creator or a room moderator may do so.
func (e *Engine) DeleteAlias(ctx context.Context, userID, alias string) error {
	return e.db.Update(ctx, func(tx *store.Tx) error {
		b := tx.Get(store.Aliases, []byte(alias))
		if b == nil {
			return matrixerr.NotFound("room alias " + alias + " not found")
		}
		var rec aliasRecord
		if err := json.Unmarshal(b, &rec); err != nil {
			return err
		}
		if rec.Creator != userID {
			info, err := roomInfo(tx, rec.RoomID)
			if err != nil {
				return err
			}
			if err := e.requireModerator(tx, info, userID, "only the alias creator or a room moderator may delete it"); err != nil {
				return err
			}
		}
		if err := tx.Delete(store.Aliases, []byte(alias)); err != nil {
			return err
		}
		return e.dropCanonicalAlias(tx, rec.RoomID, userID, alias)
	})
}

// dropCanonicalAlias takes a deleted alias out of the room's
// m.room.canonical_alias, as the deleting user, so that the room no longer
// advertises it (Synapse does the same). If the user may not change that
// state, the event stays as it is: the alias is gone all the same.
func (e *Engine) dropCanonicalAlias(tx *store.Tx, roomID, userID, alias string) error {
	info, err := roomInfo(tx, roomID)
	if err != nil {
		return nil // a room this server no longer knows: nothing to update
	}
	cur, err := e.currentStateEvent(tx, info.NID, "m.room.canonical_alias", "")
	if err != nil || cur == nil {
		return err
	}
	var c map[string]json.RawMessage
	if json.Unmarshal(cur.PDU.Content(), &c) != nil {
		return nil
	}
	changed := false
	var main string
	if json.Unmarshal(c["alias"], &main) == nil && main == alias {
		delete(c, "alias")
		changed = true
	}
	var alt []string
	if json.Unmarshal(c["alt_aliases"], &alt) == nil {
		kept := alt[:0]
		for _, a := range alt {
			if a != alias {
				kept = append(kept, a)
			}
		}
		if len(kept) != len(alt) {
			changed = true
			if len(kept) == 0 {
				delete(c, "alt_aliases")
			} else {
				c["alt_aliases"], _ = json.Marshal(kept)
			}
		}
	}
	if !changed {
		return nil
	}
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	sk := ""
	pdu, err := e.build(tx, info, SendRequest{Sender: userID, RoomID: roomID, Type: "m.room.canonical_alias", StateKey: &sk, Content: b})
	if err != nil {
		return nil // not allowed to change it
	}
	if _, err := e.append(tx, info, pdu, nil); err != nil {
		return err
	}
	return putRoomInfo(tx, info)
}

// LocalAliases lists the aliases pointing at a room.
func (e *Engine) LocalAliases(userID, roomID string) ([]string, error) {
	out := []string{}
	err := e.db.View(func(tx *store.Tx) error {
		if _, _, err := e.readable(tx, userID, roomID); err != nil {
			return err
		}
		c := tx.Cursor(store.Aliases)
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var rec aliasRecord
			if json.Unmarshal(v, &rec) == nil && rec.RoomID == roomID {
				out = append(out, string(k))
			}
		}
		return nil
	})
	return out, err
}

// SetPublished adds or removes a room from the local room directory
// (PUT /directory/list/room/{roomId}); moderators only.
func (e *Engine) SetPublished(ctx context.Context, userID, roomID string, public bool) error {
	return e.db.Update(ctx, func(tx *store.Tx) error {
		info, err := roomInfo(tx, roomID)
		if err != nil {
			return err
		}
		if err := e.requireModerator(tx, info, userID, "only room moderators may publish the room"); err != nil {
			return err
		}
		if public {
			return tx.Put(store.Directory, store.PutU64(info.NID), nil)
		}
		return tx.Delete(store.Directory, store.PutU64(info.NID))
	})
}

// Published reports whether a room is in the local directory.
func (e *Engine) Published(roomID string) (bool, error) {
	pub := false
	err := e.db.View(func(tx *store.Tx) error {
		info, err := roomInfo(tx, roomID)
		if err != nil {
			return err
		}
		pub = tx.Get(store.Directory, store.PutU64(info.NID)) != nil
		return nil
	})
	return pub, err
}

// PublicRoom is one entry of /publicRooms (Client-Server API §"Listing rooms").
type PublicRoom struct {
	RoomID           string `json:"room_id"`
	Name             string `json:"name,omitempty"`
	Topic            string `json:"topic,omitempty"`
	CanonicalAlias   string `json:"canonical_alias,omitempty"`
	AvatarURL        string `json:"avatar_url,omitempty"`
	NumJoinedMembers int    `json:"num_joined_members"`
	WorldReadable    bool   `json:"world_readable"`
	GuestCanJoin     bool   `json:"guest_can_join"`
	JoinRule         string `json:"join_rule,omitempty"`
	RoomType         string `json:"room_type,omitempty"`
}

// publicRooms lists the local directory, largest rooms first, with an
// optional case-insensitive filter on name, topic and alias.
func (e *Engine) publicRooms(filter string) ([]PublicRoom, error) {
	var out []PublicRoom
	filter = strings.ToLower(filter)
	err := e.db.View(func(tx *store.Tx) error {
		c := tx.Cursor(store.Directory)
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			info, err := roomInfoByNID(tx, store.U64(k))
			if err != nil {
				return err
			}
			pr, err := e.publicRoom(tx, info)
			if err != nil {
				return err
			}
			hay := strings.ToLower(pr.Name + " " + pr.Topic + " " + pr.CanonicalAlias)
			if filter == "" || strings.Contains(hay, filter) {
				out = append(out, pr)
			}
		}
		return nil
	})
	sort.SliceStable(out, func(i, j int) bool { return out[i].NumJoinedMembers > out[j].NumJoinedMembers })
	return out, err
}

// PublicRoomsPage is one page of the local directory, as both the client
// API and other servers are given it (GET/POST /publicRooms).
type PublicRoomsPage struct {
	Chunk     []PublicRoom `json:"chunk"`
	NextBatch string       `json:"next_batch,omitempty"`
	PrevBatch string       `json:"prev_batch,omitempty"`
	Total     int          `json:"total_room_count_estimate"`
}

// PublicRoomsPage pages through publicRooms: since tokens are offsets
// into the sorted list, and limit 0 means all.
func (e *Engine) PublicRoomsPage(filter, since string, limit int) (*PublicRoomsPage, error) {
	rooms, err := e.publicRooms(filter)
	if err != nil {
		return nil, err
	}
	offset := 0
	if since != "" {
		n, err := strconv.Atoi(since)
		if err != nil || n < 0 {
			return nil, matrixerr.InvalidParam("bad since token")
		}
		offset = min(n, len(rooms))
	}
	page := &PublicRoomsPage{Total: len(rooms), Chunk: rooms[offset:]}
	if limit > 0 && len(page.Chunk) > limit {
		page.Chunk = page.Chunk[:limit]
		page.NextBatch = strconv.Itoa(offset + limit)
	}
	if offset > 0 {
		page.PrevBatch = strconv.Itoa(max(0, offset-max(limit, 1)))
	}
	if page.Chunk == nil {
		page.Chunk = []PublicRoom{}
	}
	return page, nil
}

func (e *Engine) publicRoom(tx *store.Tx, info *Info) (PublicRoom, error) {
	pr := PublicRoom{RoomID: info.ID}
	field := func(typ, path string) string {
		ev, err := e.currentStateEvent(tx, info.NID, typ, "")
		if err != nil || ev == nil {
			return ""
		}
		var m map[string]any
		json.Unmarshal(ev.PDU.Content(), &m)
		s, _ := m[path].(string)
		return s
	}
	pr.Name = field("m.room.name", "name")
	pr.Topic = field("m.room.topic", "topic")
	pr.CanonicalAlias = field("m.room.canonical_alias", "alias")
	pr.AvatarURL = field("m.room.avatar", "url")
	pr.JoinRule = field("m.room.join_rules", "join_rule")
	pr.WorldReadable = field("m.room.history_visibility", "history_visibility") == "world_readable"
	pr.GuestCanJoin = field("m.room.guest_access", "guest_access") == "can_join"
	pr.RoomType = field("m.room.create", "type")
	pr.NumJoinedMembers = info.Joined
	return pr, nil
}

// CheckCanonicalAlias validates the content of an m.room.canonical_alias
// a local user sets (Client-Server API, PUT /state: "M_BAD_ALIAS"): alias
// and every alt_aliases entry must be room aliases (else M_INVALID_PARAM),
// and the local ones must exist and point to this room (else M_BAD_ALIAS).
// Aliases on other servers are taken as given: asking their servers would
// make setting room state wait on the network.
func (e *Engine) CheckCanonicalAlias(roomID string, content []byte) error {
	var c struct {
		Alias      *json.RawMessage   `json:"alias"`
		AltAliases *[]json.RawMessage `json:"alt_aliases"`
	}
	if err := json.Unmarshal(content, &c); err != nil {
		return matrixerr.InvalidParam("alias must be a string and alt_aliases a list of strings")
	}
	var aliases []string
	add := func(raw json.RawMessage, emptyOK bool) error {
		var a *string
		if err := json.Unmarshal(raw, &a); err != nil {
			return matrixerr.InvalidParam("aliases must be strings")
		}
		if a == nil || (*a == "" && emptyOK) {
			return nil // null or "": no canonical alias
		}
		aliases = append(aliases, *a)
		return nil
	}
	if c.Alias != nil {
		if err := add(*c.Alias, true); err != nil {
			return err
		}
	}
	if c.AltAliases != nil {
		for _, raw := range *c.AltAliases {
			if err := add(raw, false); err != nil {
				return err
			}
		}
	}
	return e.db.View(func(tx *store.Tx) error {
		for _, a := range aliases {
			_, server, _ := strings.Cut(a, ":")
			if err := validateAlias(a, server); err != nil {
				return err
			}
			if server != string(e.serverName) {
				continue
			}
			var rec aliasRecord
			if b := tx.Get(store.Aliases, []byte(a)); b == nil || json.Unmarshal(b, &rec) != nil || rec.RoomID != roomID {
				return matrixerr.BadAlias("room alias " + a + " does not point to this room")
			}
		}
		return nil
	})
}
