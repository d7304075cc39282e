package account

import (
	"context"
	"sync"

	"github.com/hearth-chat/hearth/internal/store"
)

// People nearby (issue 11): an account that opts in is announced on the
// local network with its display name, so people on the same Wi-Fi find
// it in their user directory. The flag lives on the user record; it is
// off for every account but the owner made at first start, who is the
// person who installed Hearth to be found.

// profileHooks are called after a change that alters what is announced
// on the LAN (display name, opt-in, deactivation) has been committed.
type profileHooks struct {
	mu  sync.Mutex
	fns []func()
}

// OnProfileChange registers fn, called (without locks held, after the
// commit) whenever a display name, the nearby opt-in or an account's
// activation changes, so the daemon can re-announce.
func (a *Accounts) OnProfileChange(fn func()) {
	a.hooks.mu.Lock()
	a.hooks.fns = append(a.hooks.fns, fn)
	a.hooks.mu.Unlock()
}

func (a *Accounts) profileChanged() {
	a.hooks.mu.Lock()
	fns := append([]func(){}, a.hooks.fns...)
	a.hooks.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// SetNearby switches whether the account is announced to people nearby.
// Unknown accounts are M_NOT_FOUND; a deactivated one cannot opt in.
func (a *Accounts) SetNearby(ctx context.Context, localpart string, on bool) error {
	err := a.db.Update(ctx, func(tx *store.Tx) error {
		return modifyUser(tx, localpart, func(u *User) error {
			if u.Deactivated && on {
				return errDeactivated()
			}
			u.Nearby = on
			return nil
		})
	})
	if err != nil {
		return err
	}
	a.profileChanged()
	return nil
}

// Nearby lists the active accounts that opted in to be found nearby, in
// localpart order.
func (a *Accounts) Nearby() ([]User, error) {
	users, err := a.List()
	if err != nil {
		return nil, err
	}
	out := users[:0]
	for _, u := range users {
		if u.Nearby && !u.Deactivated {
			out = append(out, u)
		}
	}
	return out, nil
}
