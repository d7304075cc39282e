package e2e

import (
	"encoding/json"
	"strings"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/hearth-chat/hearth/localapi/control"
)

// TestTrayPausesFederation: "Pause federation" in the tray closes hs1 to
// other servers (the control API reports it paused, and bob's message from
// hs2 does not arrive); "Resume federation" opens it again, and the
// message hs2 kept queued arrives.
func TestTrayPausesFederation(t *testing.T) {
	net := startFedNet(t, "hs1.test", "hs2.test")
	hs1, hs2 := net.Daemons["hs1.test"], net.Daemons["hs2.test"]
	alice := hs1.Register("alice")
	bob := hs2.Register("bob")
	roomID := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomAliasName: "pause"})
	_, err := bob.JoinRoom(ctx(t), "#pause:hs1.test", nil)
	noErr(t, err, "bob joins")

	ui := startTray(t, hs1)
	federation := func(d *Daemon) control.FederationStatus {
		code, out, errOut := runHearth(t, "federation", "--json", "--data-dir", d.DataDir, "--client-listen", d.Addr)
		if code != 0 {
			t.Fatalf("hearth federation: exit %d: %s", code, errOut)
		}
		var st control.FederationStatus
		noErr(t, json.Unmarshal([]byte(out), &st), "parse hearth federation --json")
		return st
	}
	ui.click("Pause federation")
	waitFor(t, "federation paused, as the control API says", func() (bool, bool) { p := federation(hs1).Paused; return p, p })
	waitFor(t, "the tray offering to resume", func() (string, bool) {
		items := trayMenu(t, ui.menu)
		return items[0].label, strings.Contains(items[0].label, "federation paused") && hasItem(items, "Resume federation")
	})

	SendText(t, bob, roomID, "are you there?")
	// hs2 cannot deliver while hs1 is paused: its queue holds the message.
	waitFor(t, "hs2 failing to reach hs1, the message kept in its queue", func() ([]control.Destination, bool) {
		ds := federation(hs2).Destinations
		for _, d := range ds {
			if d.Name == "hs1.test" && d.Queued > 0 && d.Failures > 0 {
				return ds, true
			}
		}
		return ds, false
	})

	ui.click("Resume federation")
	waitFor(t, "federation resumed", func() (bool, bool) { p := federation(hs1).Paused; return p, !p })
	waitMessages(t, alice, roomID, 1)
}

func hasItem(items []menuItem, label string) bool {
	for _, it := range items {
		if it.label == label {
			return true
		}
	}
	return false
}
