package e2e

import (
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// TestProfiles checks that a display name change reaches every room the
// user is in as a new m.room.member event, /profile, and the user
// directory.
func TestProfiles(t *testing.T) {
	t.Parallel()
	d := StartDaemon(t)
	alice, bob := d.Register("alice"), d.Register("bob")
	roomID := PublicRoom(t, alice, bob)
	otherRoom := PublicRoom(t, bob, alice)
	bobTok := Quiesce(t, bob, Sync(t, bob, "", "", 0).NextBatch)

	const name = "Alice Liddell"
	noErr(t, alice.SetDisplayName(ctx(t), name), "alice sets her display name")

	// Every room alice is in gets a new member event.
	updated := map[string]bool{}
	SyncUntil(t, bob, bobTok, "", "alice's new member events", func(r *mautrix.RespSync) bool {
		for rid, jr := range r.Rooms.Join {
			for _, ev := range jr.Timeline.Events {
				if ev.Type == event.StateMember && ev.GetStateKey() == alice.UserID.String() &&
					ev.Content.Raw["displayname"] == name && ev.Content.Raw["membership"] == "join" {
					updated[rid.String()] = true
				}
			}
		}
		return updated[roomID.String()] && updated[otherRoom.String()]
	})
	for _, rid := range []string{roomID.String(), otherRoom.String()} {
		var member event.MemberEventContent
		noErr(t, bob.StateEvent(ctx(t), id.RoomID(rid), event.StateMember, alice.UserID.String(), &member), "alice's member state")
		if member.Displayname != name || member.Membership != event.MembershipJoin {
			t.Errorf("alice's member state in %s: %+v", rid, member)
		}
	}
	if got := must(bob.JoinedMembers(ctx(t), roomID)).get(t).Joined[alice.UserID].DisplayName; got != name {
		t.Errorf("/joined_members display name of alice: %q, want %q", got, name)
	}

	prof := must(bob.GetProfile(ctx(t), alice.UserID)).get(t)
	if prof.DisplayName != name {
		t.Errorf("/profile displayname %q, want %q", prof.DisplayName, name)
	}
	dn := must(bob.GetDisplayName(ctx(t), alice.UserID)).get(t)
	if dn.DisplayName != name {
		t.Errorf("/profile/displayname %q, want %q", dn.DisplayName, name)
	}
	_, err := bob.GetProfile(ctx(t), UserID("nobody"))
	wantMatrixErr(t, err, 404, "M_NOT_FOUND", "profile of an unknown user")

	for _, term := range []string{"liddell", "alice"} {
		res := must(bob.SearchUserDirectory(ctx(t), term, 10)).get(t)
		found := false
		for _, u := range res.Results {
			if u.UserID == alice.UserID {
				found = true
				// The spec names the field display_name here (not
				// displayname as in /profile); mautrix keeps it in Extra.
				if dn, _ := u.Extra["display_name"].(string); dn != name {
					t.Errorf("directory result for alice has display_name %q (entry %+v)", dn, u)
				}
			}
		}
		if !found {
			t.Errorf("user directory search %q as bob did not find alice: %+v", term, res.Results)
		}
	}
}
