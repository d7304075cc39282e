package matrix

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
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
func (s *Server) upgradeRoom(w http.ResponseWriter, r *http.Request, c *caller) {
	body, err := readBody(r)
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	var req struct {
		NewVersion         *string         `json:"new_version"`
		AdditionalCreators json.RawMessage `json:"additional_creators"`
	}
	if err := decode(body, &req); err != nil {
		matrixerr.Write(w, err)
		return
	}
	if req.NewVersion == nil {
		matrixerr.Write(w, matrixerr.MissingParam("new_version is required"))
		return
	}
	var creators []string
	if len(req.AdditionalCreators) > 0 && string(req.AdditionalCreators) != "null" {
		if err := json.Unmarshal(req.AdditionalCreators, &creators); err != nil {
			matrixerr.Write(w, matrixerr.BadJSON("additional_creators must be an array of user IDs"))
			return
		}
	}
	id, err := s.rooms.UpgradeRoom(r.Context(), room.UpgradeRequest{Sender: c.UserID, RoomID: r.PathValue("roomId"),
		NewVersion: *req.NewVersion, AdditionalCreators: creators, Profile: s.profileOf(c)})
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	ctx := context.WithoutCancel(r.Context())
	s.carryPushRules(ctx, r.PathValue("roomId"), id)
	s.carryTags(ctx, r.PathValue("roomId"), id)
	writeJSON(w, map[string]any{"replacement_room": id})
}

// carryPushRules gives every local member of the old room the push rules
// they had for it in the new room too (Client-Server API §"Room
// Upgrades": the server should transfer users' notification settings).
// A rule is the old room's if it is its room rule, or an override or
// underride rule named after it that matches its room_id (how clients
// mute a room). Failures are logged: the upgrade itself stands.
func (s *Server) carryPushRules(ctx context.Context, oldID, newID string) {
	if s.push == nil || s.push.Rules == nil {
		return
	}
	for _, m := range s.rooms.LocalJoinedMembers(oldID) {
		user := *m.StateKey()
		global, err := s.push.Rules.Global(user)
		if err != nil {
			slog.Info("room upgrade: read push rules", "user", user, "err", err)
			continue
		}
		for _, kind := range []string{"override", "room", "underride"} {
			for _, rule := range global[kind] {
				c := ruleForRoom(rule, kind, oldID, newID)
				if c == nil {
					continue
				}
				if err := s.push.Rules.Put(ctx, user, c, "", ""); err != nil {
					slog.Info("room upgrade: copy push rule", "user", user, "rule", rule.RuleID, "err", err)
				}
			}
		}
	}
}

// carryTags gives every local member of the old room the tags they put
// on it (m.tag room account data) on the new room too, so the room stays
// in their favourites or low priority.
func (s *Server) carryTags(ctx context.Context, oldID, newID string) {
	for _, m := range s.rooms.LocalJoinedMembers(oldID) {
		lp := s.accounts.Localpart(*m.StateKey())
		tags, err := s.accounts.AccountData(lp, oldID, "m.tag")
		if err != nil {
			continue // none
		}
		if err := s.accounts.PutAccountData(ctx, lp, newID, "m.tag", tags); err != nil {
			slog.Info("room upgrade: copy tags", "user", lp, "err", err)
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
