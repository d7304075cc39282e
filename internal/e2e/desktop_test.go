package e2e

import (
	"regexp"
	"testing"

	"github.com/godbus/dbus/v5"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// notificationServer is a freedesktop Notifications service on the test's
// private bus: what a desktop's notification daemon would be.
type notificationServer chan [2]string

func (n notificationServer) Notify(app string, replaces uint32, icon, summary, body string, actions []string,
	hints map[string]dbus.Variant, timeout int32) (uint32, *dbus.Error) {
	n <- [2]string{summary, body}
	return 1, nil
}

func (n notificationServer) GetCapabilities() ([]string, *dbus.Error) { return []string{"body"}, nil }

func (n notificationServer) GetServerInformation() (string, string, string, string, *dbus.Error) {
	return "e2e", "hearth", "1", "1.2", nil
}

func (n notificationServer) CloseNotification(uint32) *dbus.Error { return nil }

var ownerPassword = regexp.MustCompile(`password\s+(\S+)`)

// TestDesktopNotifications: a message to the owner, whose clients are not
// active, becomes a desktop notification over D-Bus with sender, room and
// text.
func TestDesktopNotifications(t *testing.T) {
	conn, addr := privateBus(t)
	server := make(notificationServer, 8)
	noErr(t, conn.Export(server, "/org/freedesktop/Notifications", "org.freedesktop.Notifications"), "export")
	reply, err := conn.RequestName("org.freedesktop.Notifications", dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own org.freedesktop.Notifications: %v %v", reply, err)
	}
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", addr) // the daemon's session bus
	d := StartDaemon(t)
	m := ownerPassword.FindStringSubmatch(d.Logs())
	if m == nil {
		t.Fatalf("no owner password in the welcome text:\n%s", d.Logs())
	}
	owner := d.Client("", "")
	_, err = owner.Login(ctx(t), &mautrix.ReqLogin{Type: mautrix.AuthTypePassword,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: "root"}, Password: m[1], StoreCredentials: true})
	noErr(t, err, "owner login")
	bob := d.Register("bob")
	roomID := CreateRoom(t, owner, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Kitchen", Invite: []id.UserID{bob.UserID}})
	Join(t, bob, roomID)
	SendText(t, bob, roomID, "dinner at eight?")
	got := waitFor(t, "a desktop notification", func() ([2]string, bool) {
		select {
		case n := <-server:
			return n, true
		default:
			return [2]string{}, false
		}
	})
	if got != [2]string{"bob in Kitchen", "dinner at eight?"} {
		t.Fatalf("notification %q", got)
	}
}
