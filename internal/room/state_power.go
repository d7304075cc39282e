package room

import (
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// powerLevels is the room's power levels with the creators of room v12
// folded in, since gomatrixserverlib's UserLevel ignores them.
type powerLevels struct {
	gomatrixserverlib.PowerLevelContent
	creators map[string]bool
}

func (p *powerLevels) level(userID string) int64 {
	if p.creators[userID] {
		return gomatrixserverlib.CreatorPowerLevel
	}
	return p.UserLevel(spec.SenderID(userID))
}

// powerLevels reads the current power levels, or the defaults the auth
// rules assume when there is no power_levels event.
func (e *Engine) powerLevels(tx *store.Tx, info *Info) (*powerLevels, error) {
	create, err := e.currentStateEvent(tx, info.NID, "m.room.create", "")
	if err != nil || create == nil {
		return nil, err
	}
	out := &powerLevels{creators: map[string]bool{}}
	ver, err := gomatrixserverlib.GetRoomVersion(info.Version)
	if err != nil {
		return nil, err
	}
	if ver.PrivilegedCreators() {
		for _, c := range gomatrixserverlib.CreatorsFromCreateEvent(create.PDU) {
			out.creators[c] = true
		}
	}
	plEv, err := e.currentStateEvent(tx, info.NID, "m.room.power_levels", "")
	if err != nil {
		return nil, err
	}
	if plEv == nil {
		out.Defaults()
		out.Users = map[string]int64{string(create.PDU.SenderID()): 100}
		return out, nil
	}
	pl, err := plEv.PDU.PowerLevels()
	if err != nil {
		return nil, err
	}
	out.PowerLevelContent = *pl
	return out, nil
}

// requireModerator refuses users below the room's state_default power
// level, the bar the spec sets for managing a room's aliases and listing.
func (e *Engine) requireModerator(tx *store.Tx, info *Info, userID, why string) error {
	pl, err := e.powerLevels(tx, info)
	if err != nil {
		return err
	}
	if pl.level(userID) < pl.StateDefault {
		return matrixerr.Forbidden(why)
	}
	return nil
}
