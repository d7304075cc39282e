package room

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// UpgradeRequest is POST /rooms/{roomId}/upgrade (Client-Server API
// §"Room Upgrades").
type UpgradeRequest struct {
	Sender     string
	RoomID     string
	NewVersion string
	// AdditionalCreators are the other creators of the new room, for
	// versions with privileged creators (12); ignored for the others.
	AdditionalCreators []string
	Profile            Profile // the sender's member event in the new room
}

// maxSafeLevel is the highest power level canonical JSON can carry
// (2^53-1); creators of a room v12 get it when a room is moved to a
// version without privileged creators.
const maxSafeLevel = 1<<53 - 1

// transferable is the state carried into the new room, in the order it is
// sent: the spec's recommended list (Client-Server API §"Server
// behaviour" of room upgrades) plus the canonical alias, whose local
// aliases move too.
var transferable = []string{
	"m.room.join_rules", "m.room.history_visibility", "m.room.guest_access",
	"m.room.name", "m.room.topic", "m.room.avatar", "m.room.encryption",
	"m.room.server_acl", "m.room.canonical_alias",
}

// UpgradeRoom replaces a room with a new one of another version, in one
// transaction, following the spec's server behaviour:
//
//  1. the sender must be allowed to send m.room.tombstone in the old room;
//  2. the new room's create event names the old room as predecessor (with
//     the old room's last event in versions whose room ID the server
//     picks; a room v12's ID is its create event's hash, made before the
//     tombstone exists) and keeps its type and m.federate;
//  3. the sender joins, and the transferable state is copied. Power
//     levels are copied with the sender raised, while copying, to the
//     highest level any event needs, then restored by sending the old
//     levels again. Creators of a v12 room are never listed in users; the
//     creators of a v12 room moved to an older version get the highest
//     safe level (anyone else who had it is put one below);
//  4. local aliases move to the new room, the directory entry too;
//  5. the old room gets m.room.tombstone, and, where the sender may, power
//     levels that stop ordinary members sending or inviting
//     (events_default and invite at least max(50, users_default+1)) and
//     an empty canonical alias.
//
// Nobody is invited: members follow the tombstone.
func (e *Engine) UpgradeRoom(ctx context.Context, req UpgradeRequest) (string, error) {
	verName := gomatrixserverlib.RoomVersion(req.NewVersion)
	ver, err := gomatrixserverlib.GetRoomVersion(verName)
	if req.NewVersion == "" {
		return "", matrixerr.MissingParam("new_version is required")
	}
	if err != nil || !slices.Contains(SupportedVersions(), verName) {
		return "", matrixerr.UnsupportedRoomVersion(fmt.Sprintf("room version %q is not supported", verName))
	}
	var creators []string
	if ver.PrivilegedCreators() {
		creators = append(creators, req.Sender)
		for _, c := range req.AdditionalCreators {
			if _, err := spec.NewUserID(c, true); err != nil {
				return "", matrixerr.InvalidParam("additional_creators: invalid user ID " + c)
			}
			if !slices.Contains(creators, c) {
				creators = append(creators, c)
			}
		}
	}
	var newID string
	err = e.db.Update(ctx, func(tx *store.Tx) error {
		old, err := roomInfo(tx, req.RoomID)
		if err != nil {
			return matrixerr.Forbidden("you are not joined to this room")
		}
		oldPL, err := e.powerLevels(tx, old)
		if err != nil {
			return err
		}
		if m := membershipIn(tx, req.Sender, old.NID); m.Membership != "join" {
			return matrixerr.Forbidden("you are not joined to this room")
		}
		if oldPL.level(req.Sender) < oldPL.EventLevel("m.room.tombstone", true) {
			return matrixerr.Forbidden("you may not send m.room.tombstone, so you cannot upgrade this room")
		}
		oldCreate, err := e.currentStateEvent(tx, old.NID, "m.room.create", "")
		if err != nil {
			return fmt.Errorf("room: upgrade %s: read create event: %w", req.RoomID, err)
		}
		if oldCreate == nil {
			return fmt.Errorf("room: upgrade %s: no create event", req.RoomID)
		}
		creation, err := upgradeCreation(oldCreate.PDU, old, ver, req.Sender, creators)
		if err != nil {
			return err
		}
		info, err := e.newRoom(tx, req.Sender, ver, creation)
		if err != nil {
			return err
		}
		newID = info.ID
		// send builds and appends one state event of the sender. A piece
		// the auth rules refuse, or that is not valid in the new version,
		// is left out unless the upgrade cannot do without it.
		send := func(r *Info, typ string, content any, required bool) error {
			b, err := json.Marshal(content)
			if err != nil {
				return fmt.Errorf("room: encode %s: %w", typ, err)
			}
			sk := ""
			if typ == "m.room.member" {
				sk = req.Sender
			}
			pdu, err := e.build(tx, r, SendRequest{Sender: req.Sender, RoomID: r.ID, Type: typ, StateKey: &sk, Content: b})
			if err != nil {
				if required {
					return err
				}
				slog.Info("room upgrade: state not carried", "room", r.ID, "type", typ, "err", err)
				return nil
			}
			_, err = e.append(tx, r, pdu, nil)
			return err
		}
		if err := send(info, "m.room.member", req.Profile.joinContent(), true); err != nil {
			return err
		}

		final, err := upgradedPowerLevels(tx, e, old, oldPL, ver, creators)
		if err != nil {
			return err
		}
		first := final
		if !ver.PrivilegedCreators() {
			if need := highestLevel(final); levelOf(final, req.Sender) < need {
				first = withUserLevel(final, req.Sender, need)
			}
		}
		if err := send(info, "m.room.power_levels", first, true); err != nil {
			return err
		}
		for _, typ := range transferable {
			ev, err := e.currentStateEvent(tx, old.NID, typ, "")
			if err != nil {
				return err
			}
			if ev == nil {
				continue
			}
			if err := send(info, typ, json.RawMessage(ev.PDU.Content()), false); err != nil {
				return err
			}
		}
		if spaceType(oldCreate.PDU) {
			// A space's children are what it is for; carry them too.
			if err := e.copySpaceChildren(tx, old, info, req.Sender); err != nil {
				return err
			}
		}
		if !jsonSame(first, final) {
			// Back to the old levels: the sender must not keep the raise.
			if err := send(info, "m.room.power_levels", final, true); err != nil {
				return err
			}
		}
		if err := moveAliases(tx, old, info); err != nil {
			return err
		}

		if err := send(old, "m.room.tombstone", map[string]any{
			"body": "This room has been replaced", "replacement_room": info.ID,
		}, true); err != nil {
			return err
		}
		if alias, _ := e.currentStateEvent(tx, old.NID, "m.room.canonical_alias", ""); alias != nil && len(alias.PDU.Content()) > 2 {
			if err := send(old, "m.room.canonical_alias", map[string]any{}, false); err != nil {
				return err
			}
		}
		if restricted := restrictedLevels(tx, e, old); restricted != nil {
			if err := send(old, "m.room.power_levels", restricted, false); err != nil {
				return err
			}
		}
		if err := putRoomInfo(tx, info); err != nil {
			return err
		}
		return putRoomInfo(tx, old)
	})
	return newID, err
}

// upgradeCreation is the new room's create content, shaped for its
// version as creationContent shapes a new room's.
func upgradeCreation(oldCreate gomatrixserverlib.PDU, old *Info, ver gomatrixserverlib.IRoomVersion, sender string, creators []string) (map[string]any, error) {
	var oldContent map[string]any
	if err := json.Unmarshal(oldCreate.Content(), &oldContent); err != nil {
		return nil, fmt.Errorf("room: upgrade: old create content: %w", err)
	}
	predecessor := map[string]any{"room_id": old.ID}
	if !ver.DomainlessRoomIDs() && len(old.Extremities) > 0 {
		// Deprecated since v1.16 but still to be set where practical.
		predecessor["event_id"] = old.Extremities[0]
	}
	content := map[string]any{"predecessor": predecessor, "room_version": string(ver.Version())}
	if !ver.PrivilegedCreators() && ver.Version() != gomatrixserverlib.RoomVersionV11 {
		content["creator"] = sender // required before room v11
	}
	for _, k := range []string{"type", "m.federate"} {
		if v, ok := oldContent[k]; ok {
			content[k] = v
		}
	}
	if len(creators) > 1 {
		content["additional_creators"] = creators[1:]
	}
	return content, nil
}

func spaceType(create gomatrixserverlib.PDU) bool {
	var c struct {
		Type string `json:"type"`
	}
	return json.Unmarshal(create.Content(), &c) == nil && c.Type == "m.space"
}

// copySpaceChildren carries a space's m.space.child events into its
// replacement, skipping any the auth rules refuse.
func (e *Engine) copySpaceChildren(tx *store.Tx, old, info *Info, sender string) error {
	type child struct {
		sk      string
		content []byte
	}
	var children []child
	err := eachCurrentState(tx, old.NID, "m.space.child\x00", func(_, sk string, nid uint64) error {
		ev, err := e.loadEvent(tx, nid)
		if err != nil {
			return err
		}
		children = append(children, child{sk, ev.PDU.Content()})
		return nil
	})
	if err != nil {
		return err
	}
	for _, c := range children {
		sk := c.sk
		pdu, err := e.build(tx, info, SendRequest{Sender: sender, RoomID: info.ID, Type: "m.space.child", StateKey: &sk, Content: c.content})
		if err != nil {
			continue
		}
		if _, err := e.append(tx, info, pdu, nil); err != nil {
			return err
		}
	}
	return nil
}

// moveAliases points the old room's local aliases at the new room, and
// moves its directory listing (Client-Server API §"Room Upgrades": "moves
// any local aliases to the new room").
func moveAliases(tx *store.Tx, old, info *Info) error {
	var moved []string
	var recs []aliasRecord
	c := tx.Cursor(store.Aliases)
	for k, v := c.First(); k != nil; k, v = c.Next() {
		var rec aliasRecord
		if json.Unmarshal(v, &rec) == nil && rec.RoomID == old.ID {
			moved = append(moved, string(k))
			recs = append(recs, rec)
		}
	}
	for i, alias := range moved {
		if err := putAlias(tx, alias, info.ID, recs[i].Creator); err != nil {
			return err
		}
	}
	if tx.Get(store.Directory, store.PutU64(old.NID)) != nil {
		if err := tx.Put(store.Directory, store.PutU64(info.NID), nil); err != nil {
			return err
		}
		return tx.Delete(store.Directory, store.PutU64(old.NID))
	}
	return nil
}
