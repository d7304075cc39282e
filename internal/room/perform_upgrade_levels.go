package room

import (
	"encoding/json"
	"fmt"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/hearth-chat/hearth/internal/store"
)

// The power levels of a room upgrade (Client-Server API §"Room Upgrades"):
// the new room's, carried over with the sender temporarily raised, and the
// old room's, raised so ordinary members can no longer talk there.

// upgradedPowerLevels is the old room's power levels as the new room gets
// them: every level an integer (rooms before v10 allowed strings), other
// keys kept, and creators handled as UpgradeRoom describes.
func upgradedPowerLevels(tx *store.Tx, e *Engine, old *Info, pl *powerLevels, ver gomatrixserverlib.IRoomVersion, creators []string) (map[string]any, error) {
	content := map[string]any{}
	if ev, err := e.currentStateEvent(tx, old.NID, "m.room.power_levels", ""); err != nil {
		return nil, err
	} else if ev != nil {
		if err := json.Unmarshal(ev.PDU.Content(), &content); err != nil {
			return nil, fmt.Errorf("room: upgrade: power levels content: %w", err)
		}
	}
	users := map[string]any{}
	for u, l := range pl.Users {
		users[u] = l
	}
	if len(pl.creators) > 0 && !ver.PrivilegedCreators() {
		for u, l := range pl.Users {
			if l >= maxSafeLevel {
				users[u] = int64(maxSafeLevel - 1)
			}
		}
		for c := range pl.creators {
			users[c] = int64(maxSafeLevel)
		}
	}
	for _, c := range creators {
		delete(users, c)
	}
	events := map[string]any{}
	for t, l := range pl.Events {
		events[t] = l
	}
	notifications := map[string]any{}
	for n, l := range pl.Notifications {
		notifications[n] = l
	}
	content["users"], content["events"], content["notifications"] = users, events, notifications
	content["ban"], content["invite"], content["kick"], content["redact"] = pl.Ban, pl.Invite, pl.Kick, pl.Redact
	content["users_default"], content["events_default"], content["state_default"] = pl.UsersDefault, pl.EventsDefault, pl.StateDefault
	return content, nil
}

// highestLevel is the level that lets a user send anything the power
// levels name, including power levels that keep everyone where they are.
func highestLevel(content map[string]any) int64 {
	var top int64
	for _, k := range []string{"ban", "invite", "kick", "redact", "events_default", "state_default"} {
		top = max(top, asLevel(content[k]))
	}
	for _, m := range []string{"events", "users"} {
		mm, _ := content[m].(map[string]any)
		for _, v := range mm {
			top = max(top, asLevel(v))
		}
	}
	return top
}

func levelOf(content map[string]any, user string) int64 {
	users, _ := content["users"].(map[string]any)
	if v, ok := users[user]; ok {
		return asLevel(v)
	}
	return asLevel(content["users_default"])
}

func asLevel(v any) int64 {
	switch n := v.(type) {
	case int64:
		return n
	case float64:
		return int64(n)
	}
	return 0
}

// withUserLevel is a copy of content with user at level.
func withUserLevel(content map[string]any, user string, level int64) map[string]any {
	out := map[string]any{}
	for k, v := range content {
		out[k] = v
	}
	users := map[string]any{}
	old, _ := content["users"].(map[string]any)
	for k, v := range old {
		users[k] = v
	}
	users[user] = level
	out["users"] = users
	return out
}

func jsonSame(a, b map[string]any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// restrictedLevels is the old room's power levels with events_default and
// invite raised to max(50, users_default+1), so ordinary members can
// neither talk nor invite there any more; nil when they already are.
func restrictedLevels(tx *store.Tx, e *Engine, old *Info) map[string]any {
	ev, err := e.currentStateEvent(tx, old.NID, "m.room.power_levels", "")
	if err != nil || ev == nil {
		return nil
	}
	pl, err := ev.PDU.PowerLevels()
	if err != nil {
		return nil
	}
	var content map[string]any
	if json.Unmarshal(ev.PDU.Content(), &content) != nil {
		return nil
	}
	bar := max(int64(50), pl.UsersDefault+1)
	if pl.EventsDefault >= bar && pl.Invite >= bar {
		return nil
	}
	content["events_default"] = max(pl.EventsDefault, bar)
	content["invite"] = max(pl.Invite, bar)
	return content
}
