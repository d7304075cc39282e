package daemon

import (
	"github.com/gen2brain/beeep"
)

// desktop shows notifications through gen2brain/beeep: the freedesktop
// Notifications service over the session D-Bus on Linux, the platform's
// own mechanisms on macOS and Windows.
type desktop struct{}

func (desktop) Notify(title, body string) error {
	beeep.AppName = "Hearth"
	return beeep.Notify(title, body, "")
}

// isOwner reports whether userID is an admin account: the person whose
// computer this is (first start makes their account an admin).
func (d *Daemon) isOwner(userID string) bool {
	u, err := d.accounts.Get(d.accounts.Localpart(userID))
	return err == nil && u != nil && u.Admin
}
