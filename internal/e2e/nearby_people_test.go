package e2e

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// nearbyPeopleDeadline bounds how long a change of who is announced takes
// to reach a neighbour's directory: the re-announcement is sent at once
// (RFC 6762 §8.4), so this is the listing deadline.
const nearbyPeopleDeadline = nearbyListDeadline

// TestNearbyPeopleInDirectory (issue 11, "Finding people"): alice on host
// a finds people of host b through /user_directory/search, as Element's
// Start chat does: the owner made at b's first start (opted in by
// default) by localpart, robert ("Bob Builder", opted in with `hearth
// account nearby`) by display name and by localpart, and never bobcat,
// who did not opt in. `hearth peers --json` lists b's people; when robert
// opts out he leaves alice's directory.
func TestNearbyPeopleInDirectory(t *testing.T) {
	t.Parallel()
	lan := NewLAN(t)
	hosts := []*Host{lan.AddHost("anna-laptop"), lan.AddHost("ben-laptop")}
	ds := startLAN(t, hosts, nil)
	a, b := ds[0], ds[1]
	ownerB, _ := Owner(t, b.Daemon)

	alice := Account(t, a.Daemon, "alice")
	robert, bobcat := Account(t, b.Daemon, "robert"), Account(t, b.Daemon, "bobcat")
	noErr(t, robert.SetDisplayName(ctx(t), "Bob Builder"), "robert's display name")
	noErr(t, bobcat.SetDisplayName(ctx(t), "Bobcat"), "bobcat's display name")
	nearby(t, b, "robert", "on")
	robertID, bobcatID := id.UserID("@robert:"+b.ServerName()), id.UserID("@bobcat:"+b.ServerName())

	// The owner, by localpart (on by default).
	ownerLP := id.UserID(ownerB).Localpart()
	waitDirectory(t, alice, ownerLP, "the owner of "+b.ServerName(), func(r map[id.UserID]string) bool {
		_, ok := r[id.UserID(ownerB)]
		return ok
	})
	// robert by display name; bobcat matches "Bob" too but never opted in.
	got := waitDirectory(t, alice, "Bob", "Bob Builder", func(r map[id.UserID]string) bool { return r[robertID] == "Bob Builder" })
	if _, ok := got[bobcatID]; ok {
		t.Errorf("bobcat, who did not opt in, is in alice's directory: %v", got)
	}
	waitDirectory(t, alice, "robert", "robert by localpart", func(r map[id.UserID]string) bool { return r[robertID] == "Bob Builder" })

	// hearth peers lists b's people.
	code, out, errOut := runHearth(t, "peers", "--json", "--data-dir", a.DataDir)
	if code != 0 {
		t.Fatalf("hearth peers: exit %d: %s", code, errOut)
	}
	var st struct {
		Peers []peerPeople `json:"peers"`
	}
	noErr(t, json.Unmarshal([]byte(out), &st), "hearth peers --json: %s", out)
	i := slices.IndexFunc(st.Peers, func(p peerPeople) bool { return p.ServerName == b.ServerName() })
	if i < 0 || !slices.Contains(st.Peers[i].People, nearbyPerson{UserID: robertID.String(), DisplayName: "Bob Builder"}) {
		t.Errorf("hearth peers --json does not list Bob Builder among %s's people: %s", b.ServerName(), out)
	}

	// robert opts out: b re-announces and he leaves alice's directory.
	nearby(t, b, "robert", "off")
	waitDirectory(t, alice, "Bob", "Bob Builder gone after opting out", func(r map[id.UserID]string) bool {
		_, ok := r[robertID]
		return !ok
	})
}

// peerPeople is the part of a `hearth peers --json` entry about people.
type peerPeople struct {
	ServerName string         `json:"server_name"`
	People     []nearbyPerson `json:"people"`
}

type nearbyPerson struct {
	UserID      string `json:"user_id"`
	DisplayName string `json:"display_name"`
}

// nearby runs `hearth account nearby NAME on|off` against d's control socket.
func nearby(t *testing.T, d *lanDaemon, name, onOff string) {
	t.Helper()
	if code, out, errOut := runHearth(t, "account", "nearby", name, onOff, "--data-dir", d.DataDir); code != 0 {
		t.Fatalf("hearth account nearby %s %s: exit %d: %s%s", name, onOff, code, out, errOut)
	}
}

// waitDirectory searches c's user directory for term until pred accepts
// the results (user ID → display name), and returns them.
func waitDirectory(t *testing.T, c *mautrix.Client, term, what string, pred func(map[id.UserID]string) bool) map[id.UserID]string {
	t.Helper()
	start := time.Now()
	for {
		resp, err := c.SearchUserDirectory(ctx(t), term, 50)
		noErr(t, err, "search the user directory for %q", term)
		got := map[id.UserID]string{}
		for _, r := range resp.Results {
			// The spec's field is display_name; mautrix reads displayname
			// (the profile's) and keeps the other in Extra.
			name, _ := r.Extra["display_name"].(string)
			got[r.UserID] = name
		}
		if pred(got) {
			return got
		}
		if time.Since(start) > nearbyPeopleDeadline {
			t.Fatalf("%s: searching %q as %s: not within %v; found %v", what, term, c.UserID, nearbyPeopleDeadline, got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
