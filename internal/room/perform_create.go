package room

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// StateEvent is a state event given by a client (initial_state).
type StateEvent struct {
	Type     string          `json:"type"`
	StateKey string          `json:"state_key"`
	Content  json.RawMessage `json:"content"`
}

// CreateRequest is the body of /createRoom (Client-Server API §"Creation").
type CreateRequest struct {
	Visibility                string          `json:"visibility"`
	RoomAliasName             string          `json:"room_alias_name"`
	Name                      *string         `json:"name"`
	Topic                     *string         `json:"topic"`
	Invite                    []string        `json:"invite"`
	RoomVersion               string          `json:"room_version"`
	CreationContent           json.RawMessage `json:"creation_content"`
	InitialState              []StateEvent    `json:"initial_state"`
	Preset                    string          `json:"preset"`
	IsDirect                  bool            `json:"is_direct"`
	PowerLevelContentOverride json.RawMessage `json:"power_level_content_override"`
	// RemoteInvitesApart leaves the invites of users on other servers out
	// of the room's first events: the caller sends them through federation
	// once the room exists, since the invitee's server must countersign
	// each (Server-Server API §"Inviting to a room").
	RemoteInvitesApart bool `json:"-"`
	// InviteeProfiles are the invitees' displayname and avatar_url, for
	// their invite events, as the caller found them.
	InviteeProfiles map[string]Profile `json:"-"`
}

// Profile is the displayname and avatar a user's member events carry.
type Profile struct {
	DisplayName string `json:"displayname,omitempty"`
	AvatarURL   string `json:"avatar_url,omitempty"`
}

// joinContent is the content of a join carrying the profile.
func (p Profile) joinContent() map[string]any {
	content := map[string]any{"membership": "join"}
	p.SetOn(content)
	return content
}

// SetOn puts the profile's fields that are set into a member event's
// content.
func (p Profile) SetOn(content map[string]any) {
	if p.DisplayName != "" {
		content["displayname"] = p.DisplayName
	}
	if p.AvatarURL != "" {
		content["avatar_url"] = p.AvatarURL
	}
}

// CreateRoom creates a room with the events the preset and request ask for,
// all in one transaction: either the whole room exists or none of it.
func (e *Engine) CreateRoom(ctx context.Context, creator string, profile Profile, req CreateRequest) (string, error) {
	verName := gomatrixserverlib.RoomVersion(req.RoomVersion)
	if verName == "" {
		verName = e.defaultVersion
	}
	ver, err := gomatrixserverlib.GetRoomVersion(verName)
	if err != nil || !slices.Contains(SupportedVersions(), verName) {
		return "", matrixerr.UnsupportedRoomVersion(fmt.Sprintf("room version %q is not supported", verName))
	}
	preset := req.Preset
	if preset == "" {
		preset = "private_chat"
		if req.Visibility == "public" {
			preset = "public_chat"
		}
	}
	if preset != "private_chat" && preset != "public_chat" && preset != "trusted_private_chat" {
		return "", matrixerr.BadJSON("unknown preset " + preset)
	}
	for _, u := range req.Invite {
		if _, err := spec.NewUserID(u, true); err != nil {
			return "", matrixerr.InvalidParam("invalid user ID in invite: " + u)
		}
	}
	alias := ""
	if req.RoomAliasName != "" {
		alias = "#" + req.RoomAliasName + ":" + string(e.serverName)
		if err := validateAlias(alias, string(e.serverName)); err != nil {
			return "", err
		}
	}
	creation, creators, err := creationContent(creator, ver, preset, req)
	if err != nil {
		return "", err
	}
	events, err := e.initialEvents(creator, profile, ver, preset, alias, creators, req)
	if err != nil {
		return "", err
	}
	var roomID string
	err = e.db.Update(ctx, func(tx *store.Tx) error {
		if alias != "" && tx.Get(store.Aliases, []byte(alias)) != nil {
			return matrixerr.RoomInUse("room alias already taken")
		}
		info, err := e.newRoom(tx, creator, ver, creation)
		if err != nil {
			return err
		}
		roomID = info.ID
		for _, ev := range events {
			sk := ev.StateKey
			if _, err := e.buildAndAppend(tx, info, SendRequest{Sender: creator, RoomID: info.ID,
				Type: ev.Type, StateKey: &sk, Content: ev.Content}); err != nil {
				return fmt.Errorf("%s: %w", ev.Type, err)
			}
		}
		if alias != "" {
			if err := putAlias(tx, alias, info.ID, creator); err != nil {
				return err
			}
		}
		if req.Visibility == "public" {
			if err := tx.Put(store.Directory, store.PutU64(info.NID), nil); err != nil {
				return err
			}
		}
		return putRoomInfo(tx, info)
	})
	return roomID, err
}

// creationContent is the create event's content: the client's
// creation_content with the room version (and, before room v11, the
// creator). In room versions with privileged creators (v12, MSC4289) it
// also returns every creator: the sender, additional_creators, which must
// be a list of user IDs, and with trusted_private_chat the invitees.
func creationContent(creator string, ver gomatrixserverlib.IRoomVersion, preset string, req CreateRequest) (map[string]any, []string, error) {
	content := map[string]any{}
	if len(req.CreationContent) > 0 {
		if err := json.Unmarshal(req.CreationContent, &content); err != nil || content == nil {
			return nil, nil, matrixerr.BadJSON("creation_content must be an object")
		}
	}
	content["room_version"] = string(ver.Version())
	if !ver.PrivilegedCreators() {
		if ver.Version() != gomatrixserverlib.RoomVersionV11 {
			content["creator"] = creator // required before room v11
		}
		return content, []string{creator}, nil
	}
	creators := []string{creator}
	var extra []string
	if raw, ok := content["additional_creators"]; ok {
		list, ok := raw.([]any)
		if !ok {
			return nil, nil, matrixerr.BadJSON("additional_creators must be a list of user IDs")
		}
		for _, v := range list {
			id, ok := v.(string)
			if _, err := spec.NewUserID(id, true); !ok || err != nil {
				return nil, nil, matrixerr.BadJSON(fmt.Sprintf("additional_creators: %v is not a user ID", v))
			}
			extra = append(extra, id)
		}
	}
	if preset == "trusted_private_chat" {
		// Client-Server API §"Creation": in v12 the invitees of a trusted
		// private chat become creators rather than admins.
		extra = append(extra, req.Invite...)
	}
	for _, id := range extra {
		if !slices.Contains(creators, id) {
			creators = append(creators, id)
		}
	}
	if len(creators) > 1 {
		content["additional_creators"] = creators[1:]
	}
	return content, creators, nil
}

// newRoom allocates the room and appends its create event.
func (e *Engine) newRoom(tx *store.Tx, creator string, ver gomatrixserverlib.IRoomVersion, content map[string]any) (*Info, error) {
	raw, err := json.Marshal(content)
	if err != nil {
		return nil, matrixerr.BadJSON("bad creation_content")
	}
	nid, err := tx.NextID(store.RoomInfo)
	if err != nil {
		return nil, err
	}
	proto := gomatrixserverlib.ProtoEvent{SenderID: creator, Type: "m.room.create", StateKey: new(string),
		PrevEvents: []string{}, Depth: 1, Content: spec.RawJSON(raw)}
	if !ver.DomainlessRoomIDs() {
		// Room v12 derives the ID from the create event; older ones pick it.
		proto.RoomID = "!" + randomID(18) + ":" + string(e.serverName)
	}
	eb := ver.NewEventBuilderFromProtoEvent(&proto)
	eb.AuthEvents = []string{}
	pdu, err := eb.Build(e.now(), e.serverName, e.keyID, e.key)
	if err != nil {
		return nil, badEvent(err)
	}
	if err := gomatrixserverlib.Allowed(pdu, &gomatrixserverlib.AuthEvents{}, userIDForSender); err != nil {
		return nil, forbidden(err)
	}
	info := &Info{NID: nid, ID: pdu.RoomID().String(), Version: ver.Version()}
	if err := tx.Put(store.Rooms, []byte(info.ID), store.PutU64(nid)); err != nil {
		return nil, err
	}
	if _, err := e.append(tx, info, pdu, nil); err != nil {
		return nil, err
	}
	return info, nil
}

// initialEvents lists the state events after the create event, in the
// spec's order: creator's join, power levels, alias, preset state,
// initial_state, name, topic, then invites.
func (e *Engine) initialEvents(creator string, profile Profile, ver gomatrixserverlib.IRoomVersion, preset, alias string, creators []string, req CreateRequest) ([]StateEvent, error) {
	var out []StateEvent
	add := func(typ, sk string, content any) error {
		b, err := json.Marshal(content)
		if err != nil {
			return fmt.Errorf("room: encode %s: %w", typ, err)
		}
		out = append(out, StateEvent{Type: typ, StateKey: sk, Content: b})
		return nil
	}
	add("m.room.member", creator, profile.joinContent())

	users := map[string]any{}
	tombstone := 100
	if ver.PrivilegedCreators() {
		// v12 creators outrank everyone and must not be listed; upgrading
		// the room stays theirs unless a level above admins is given out
		// (MSC4289, Client-Server API §"Creation").
		tombstone = 150
	} else {
		users[creator] = 100
		if preset == "trusted_private_chat" {
			for _, u := range req.Invite {
				users[u] = 100
			}
		}
	}
	// Anyone in a private chat may invite; in a public room, moderators
	// (Synapse's presets do the same, and clients expect it).
	invite := 0
	if preset == "public_chat" {
		invite = 50
	}
	pl := map[string]any{
		"users": users, "users_default": 0, "events_default": 0, "state_default": 50,
		"ban": 50, "kick": 50, "redact": 50, "invite": invite,
		"events": map[string]any{
			"m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
			"m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": tombstone,
			"m.room.server_acl": 100, "m.room.encryption": 100,
		},
		"notifications": map[string]any{"room": 50},
	}
	if len(req.PowerLevelContentOverride) > 0 {
		var override map[string]any
		if err := json.Unmarshal(req.PowerLevelContentOverride, &override); err != nil || override == nil {
			return nil, matrixerr.BadJSON("power_level_content_override must be an object")
		}
		maps.Copy(pl, override)
	}
	if err := add("m.room.power_levels", "", pl); err != nil {
		return nil, err
	}
	if err := checkPowerLevels(ver, out[len(out)-1].Content, creators); err != nil {
		return nil, err
	}
	if alias != "" {
		add("m.room.canonical_alias", "", map[string]any{"alias": alias})
	}
	joinRule := "invite"
	if preset == "public_chat" {
		joinRule = "public"
	}
	add("m.room.join_rules", "", map[string]any{"join_rule": joinRule})
	add("m.room.history_visibility", "", map[string]any{"history_visibility": "shared"})
	if preset != "public_chat" {
		add("m.room.guest_access", "", map[string]any{"guest_access": "can_join"})
	}
	for _, s := range req.InitialState {
		if s.Type == "" || len(s.Content) == 0 {
			return nil, matrixerr.BadJSON("initial_state events need type and content")
		}
		if s.Type == "m.room.create" {
			return nil, matrixerr.BadJSON("initial_state cannot hold m.room.create: use creation_content")
		}
		if s.Type == "m.room.power_levels" && s.StateKey == "" {
			if err := checkPowerLevels(ver, s.Content, creators); err != nil {
				return nil, err
			}
		}
		out = append(out, s)
	}
	if req.Name != nil {
		add("m.room.name", "", map[string]any{"name": *req.Name})
	}
	if req.Topic != nil {
		add("m.room.topic", "", map[string]any{"topic": *req.Topic})
	}
	for _, u := range req.Invite {
		if req.RemoteInvitesApart && serverOf(u) != string(e.serverName) {
			continue
		}
		c := map[string]any{"membership": "invite"}
		if req.IsDirect {
			c["is_direct"] = true
		}
		req.InviteeProfiles[u].SetOn(c)
		add("m.room.member", u, c)
	}
	return out, nil
}

// checkPowerLevels refuses power levels the room version's auth rules
// would reject for their content, as a bad request rather than a
// forbidden one: values that are not integers (strict from room v10), and
// in v12 a users map that names a creator (MSC4289).
func checkPowerLevels(ver gomatrixserverlib.IRoomVersion, content json.RawMessage, creators []string) error {
	var pl gomatrixserverlib.PowerLevelContent
	if err := ver.ParsePowerLevels(content, &pl); err != nil {
		return matrixerr.BadJSON("invalid power levels: " + err.Error())
	}
	if ver.PrivilegedCreators() {
		for _, c := range creators {
			if _, ok := pl.Users[c]; ok {
				return matrixerr.BadJSON(c + " is a creator of the room and cannot be given a power level")
			}
		}
	}
	return nil
}
