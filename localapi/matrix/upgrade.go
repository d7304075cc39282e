package matrix

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"maunium.net/go/mautrix/pushrules"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
)

func (s *Server) upgradeRoutes() {
	s.mux.HandleFunc("POST /_matrix/client/v3/rooms/{roomId}/upgrade", s.authed(s.upgradeRoom))
}

// upgradeRoom implements POST /rooms/{roomId}/upgrade (Client-Server API
// §"Room Upgrades"); the room engine does the work in one transaction.
func (s *Server) upgradeRoom(w http.ResponseWriter, r *http.Request, c *caller) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var req struct {
		NewVersion         *string         `json:"new_version"`
		AdditionalCreators json.RawMessage `json:"additional_creators"`
	}
	if err := decode(body, &req); err != nil {
		return err
	}
	if req.NewVersion == nil {
		return matrixerr.MissingParam("new_version is required")
	}
	var creators []string
	if len(req.AdditionalCreators) > 0 && string(req.AdditionalCreators) != "null" {
		if err := json.Unmarshal(req.AdditionalCreators, &creators); err != nil {
			return matrixerr.BadJSON("additional_creators must be an array of user IDs")
		}
	}
	id, err := s.rooms.UpgradeRoom(r.Context(), room.UpgradeRequest{Sender: c.UserID, RoomID: r.PathValue("roomId"),
		NewVersion: *req.NewVersion, AdditionalCreators: creators, Profile: s.profileOf(c)})
	if err != nil {
		return err
	}
	s.carryPushRules(context.WithoutCancel(r.Context()), r.PathValue("roomId"), id)
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"replacement_room": id})
	return nil
}

// carryPushRules gives every local member of the old room the push rules
// and tags they had for it in the new room too (Client-Server API §"Room
// Upgrades": the server should transfer users' notification settings and
// tags). Members who join the new room later get theirs then
// (carryToUpgraded).
func (s *Server) carryPushRules(ctx context.Context, oldID, newID string) {
	for _, m := range s.rooms.LocalJoinedMembers(oldID) {
		s.carryUserState(ctx, *m.StateKey(), oldID, newID)
	}
}

// carryToUpgraded runs after a local user joined roomID: if the room
// replaces another (its create event names a predecessor), the user's
// push rules and tags for the old room are copied to it, whichever server
// did the upgrade.
func (s *Server) carryToUpgraded(ctx context.Context, userID, roomID string) {
	create := s.rooms.CurrentStatePDU(roomID, "m.room.create", "")
	if create == nil {
		return
	}
	var c struct {
		Predecessor struct {
			RoomID string `json:"room_id"`
		} `json:"predecessor"`
	}
	if json.Unmarshal(create.Content(), &c) != nil || c.Predecessor.RoomID == "" || c.Predecessor.RoomID == roomID {
		return
	}
	s.carryUserState(context.WithoutCancel(ctx), userID, c.Predecessor.RoomID, roomID)
}

// carryUserState copies one user's push rules for oldID (its room rule,
// and override or underride rules named after it that match its room_id,
// which is how clients mute a room) and their tags on it (m.tag) to
// newID, unless the user already has the rule or tags there (their choice
// for the new room wins); failures are logged, as the upgrade or join
// itself stands.
func (s *Server) carryUserState(ctx context.Context, userID, oldID, newID string) {
	lp := s.accounts.Localpart(userID)
	if _, err := s.accounts.AccountData(lp, newID, "m.tag"); err != nil {
		if tags, err := s.accounts.AccountData(lp, oldID, "m.tag"); err == nil {
			if err := s.accounts.PutAccountData(ctx, lp, newID, "m.tag", tags); err != nil {
				slog.Info("room upgrade: copy tags", "user", userID, "err", err)
			}
		}
	}
	if s.push == nil || s.push.Rules == nil {
		return
	}
	global, err := s.push.Rules.Global(userID)
	if err != nil {
		slog.Info("room upgrade: read push rules", "user", userID, "err", err)
		return
	}
	for _, kind := range []string{"override", "room", "underride"} {
		for _, rule := range global[kind] {
			c := ruleForRoom(rule, kind, oldID, newID)
			if c == nil || slices.ContainsFunc(global[kind], func(r *pushrules.PushRule) bool { return r.RuleID == c.RuleID }) {
				continue // not the old room's, or already set for the new one
			}
			if err := s.push.Rules.Put(ctx, userID, c, "", ""); err != nil {
				slog.Info("room upgrade: copy push rule", "user", userID, "rule", rule.RuleID, "err", err)
			}
		}
	}
}

// ruleForRoom is rule moved from room oldID to newID, or nil if it is not
// a rule of that room.
func ruleForRoom(rule *pushrules.PushRule, kind, oldID, newID string) *pushrules.PushRule {
	if rule.Default || !strings.Contains(rule.RuleID, oldID) {
		return nil
	}
	c := *rule
	c.Type = pushrules.PushRuleType(kind)
	c.RuleID = strings.ReplaceAll(rule.RuleID, oldID, newID)
	if kind == "room" {
		return &c
	}
	c.Conditions = nil
	matches := false
	for _, cond := range rule.Conditions {
		cc := *cond
		if cc.Kind == pushrules.KindEventMatch && cc.Key == "room_id" && cc.Pattern == oldID {
			cc.Pattern, matches = newID, true
		}
		c.Conditions = append(c.Conditions, &cc)
	}
	if !matches {
		return nil
	}
	return &c
}
