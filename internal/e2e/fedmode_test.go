package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/hearth-chat/hearth/localapi/control"
)

// TestTraySwitchesFederationMode: the tray's mode items switch a running
// federation in place. hs1 starts in internet mode (it has a CA
// certificate, federation_listen and no federation key: a config from
// before the key). "Federation: off" closes it (hs2 keeps bob's message
// queued) and writes federation = off; "Federation: people nearby (LAN)"
// opens it again with the LAN check, which admits hs2 on loopback, and
// the message arrives; the tray checks the mode in force.
func TestTraySwitchesFederationMode(t *testing.T) {
	net := startFedNet(t, "hs1.test", "hs2.test")
	hs1, hs2 := net.Daemons["hs1.test"], net.Daemons["hs2.test"]
	alice := hs1.Register("alice")
	bob := hs2.Register("bob")
	roomID := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomAliasName: "modes"})
	_, err := bob.JoinRoom(ctx(t), "#modes:hs1.test", nil)
	noErr(t, err, "bob joins")

	ui := startTray(t, hs1)
	checked := func(label string) {
		waitFor(t, "the tray checking "+label, func() ([]menuItem, bool) {
			items := trayMenu(t, ui.menu)
			return items, hasItem(items, "✓ "+label)
		})
	}
	checked("Federation: internet")

	ui.click("Federation: off")
	checked("Federation: off")
	if conf, _ := os.ReadFile(filepath.Join(hs1.DataDir, "hearth.conf")); !strings.Contains(string(conf), "federation = off") {
		t.Fatalf("hearth.conf after switching off:\n%s", conf)
	}
	SendText(t, bob, roomID, "anyone nearby?")
	waitFor(t, "hs2 failing to reach hs1, the message kept in its queue", func() (int, bool) {
		for _, d := range fedStatus(t, hs2).Destinations {
			if d.Name == "hs1.test" && d.Queued > 0 && d.Failures > 0 {
				return d.Queued, true
			}
		}
		return 0, false
	})

	ui.click("Federation: people nearby (LAN)")
	checked("Federation: people nearby (LAN)")
	if st := fedStatus(t, hs1); st.Mode != "lan" || st.RestartRequired {
		t.Fatalf("hs1 after switching to lan: %+v", st)
	}
	waitMessages(t, alice, roomID, 1)
}

// fedStatus is 'hearth federation --json' of d.
func fedStatus(t *testing.T, d *Daemon) control.FederationStatus {
	t.Helper()
	code, out, errOut := runHearth(t, "federation", "--json", "--data-dir", d.DataDir, "--client-listen", d.Addr)
	if code != 0 {
		t.Fatalf("hearth federation: exit %d: %s", code, errOut)
	}
	var st control.FederationStatus
	noErr(t, json.Unmarshal([]byte(out), &st), "parse hearth federation --json")
	return st
}
