package account

import (
	"context"

	"github.com/hearth-chat/hearth/internal/store"
)

// ChangePresence is the change-log kind for presence and profile changes.
const (
	ChangePresence = "presence"
)

// SetPresence stores the presence a user chose and logs the change.
func (a *Accounts) SetPresence(ctx context.Context, localpart, state, statusMsg string) error {
	return a.changeAnnounced(ctx, localpart, func(u *User) { u.Presence, u.StatusMsg = state, statusMsg })
}

// SetProfile changes displayname and/or avatar_url (nil leaves a field as
// it is) and logs the change, which presence and the directory read.
func (a *Accounts) SetProfile(ctx context.Context, localpart string, displayName, avatarURL *string) error {
	err := a.changeAnnounced(ctx, localpart, func(u *User) {
		if displayName != nil {
			u.DisplayName = *displayName
		}
		if avatarURL != nil {
			u.AvatarURL = *avatarURL
		}
	})
	if err == nil && displayName != nil {
		a.profileChanged() // the LAN announcement carries display names
	}
	return err
}

// changeAnnounced modifies a user and logs it as a presence change, since
// m.presence events carry the profile too.
func (a *Accounts) changeAnnounced(ctx context.Context, localpart string, fn func(*User)) error {
	return a.db.Update(ctx, func(tx *store.Tx) error {
		if err := modifyUser(tx, localpart, func(u *User) error { fn(u); return nil }); err != nil {
			return err
		}
		_, err := tx.AppendChange(store.Change{Kind: ChangePresence, Key: localpart})
		return err
	})
}

// PresenceChanges lists the localparts whose presence (or profile, which
// presence events carry) changed in (from, to]; every user with a presence
// set when from is 0.
func (a *Accounts) PresenceChanges(from, to uint64) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	err := a.db.View(func(tx *store.Tx) error {
		if from == 0 {
			c := tx.Cursor(store.Users)
			for k, _ := c.First(); k != nil; k, _ = c.Next() {
				out = append(out, string(k))
			}
			return nil
		}
		return tx.ChangesSince(from, to, func(_ uint64, c store.Change) error {
			if c.Kind == ChangePresence && !seen[c.Key] {
				seen[c.Key] = true
				out = append(out, c.Key)
			}
			return nil
		})
	})
	return out, err
}
