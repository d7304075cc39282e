package e2e

import (
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// loungeOf creates c's room #lounge (room version version) that members
// of club may join (rule: restricted or knock_restricted), where c has
// power 100 and inviting takes invite.
func loungeOf(t *testing.T, c *mautrix.Client, version id.RoomVersion, invite int, rule event.JoinRule, club id.RoomID) id.RoomID {
	t.Helper()
	return CreateRoom(t, c, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomAliasName: "lounge", RoomVersion: version,
		PowerLevelOverride: &event.PowerLevelsEventContent{InvitePtr: ptr(invite), Users: map[id.UserID]int{c.UserID: 100}},
		InitialState:       allowMembersOf(rule, club)})
}

// TestFederationRestrictedJoinFailover runs Complement's restricted-room
// failover with three daemons (Server-Server API §"Restricted rooms"):
// alice@hs1's lounge admits members of her club, and only she may invite.
// bob@hs2 is in both, so hs2 is resident but may not vouch for anyone:
// charlie@hs3, a club member, joining through hs2 alone is refused (403),
// and through hs2 then hs1 gets in, authorised by alice, as hs2 sees it.
func TestFederationRestrictedJoinFailover(t *testing.T) {
	t.Parallel()
	net := startFedNet(t, "hs1.test", "hs2.test", "hs3.test")
	alice := net.Daemons["hs1.test"].Register("alice")
	bob := net.Daemons["hs2.test"].Register("bob")
	charlie := net.Daemons["hs3.test"].Register("charlie")
	club := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomAliasName: "club"})
	lounge := loungeOf(t, alice, "10", 100, event.JoinRuleKnockRestricted, club)
	for _, step := range []struct {
		c    *mautrix.Client
		room string
	}{{bob, "#club:hs1.test"}, {bob, "#lounge:hs1.test"}, {charlie, "#club:hs1.test"}} {
		_, err := step.c.JoinRoom(ctx(t), step.room, nil)
		noErr(t, err, "%s joins %s", step.c.UserID, step.room)
	}
	waitMembership(t, bob, club, charlie.UserID, "charlie in the club, as hs2 sees it", "join")

	_, err := charlie.JoinRoom(ctx(t), lounge.String(), &mautrix.ReqJoinRoom{Via: []string{"hs2.test"}})
	wantMatrixErr(t, err, 403, "M_UNABLE_TO_GRANT_JOIN", "charlie joins the lounge through hs2 alone")
	_, err = charlie.JoinRoom(ctx(t), lounge.String(), &mautrix.ReqJoinRoom{Via: []string{"hs2.test", "hs1.test"}})
	noErr(t, err, "charlie joins the lounge through hs2, then hs1")
	waitMembership(t, bob, lounge, charlie.UserID, "charlie in the lounge, as hs2 sees it", "join")
	wantAuthorisedVia(t, bob, lounge, charlie.UserID, alice.UserID)
}

// TestFederationRestrictedJoinOfLocalUser: hs1 is in charlie@hs2's
// restricted room, but alice, its only member there, may not invite, so
// bob@hs1, who is in the allowed room, cannot be let in by hs1 itself; his
// join through his own server goes on through hs2, where charlie vouches
// for it (Complement's TestRestrictedRoomsRemoteJoinLocalUser).
func TestFederationRestrictedJoinOfLocalUser(t *testing.T) {
	t.Parallel()
	net := startFedNet(t, "hs1.test", "hs2.test")
	alice := net.Daemons["hs1.test"].Register("alice")
	bob := net.Daemons["hs1.test"].Register("bob")
	charlie := net.Daemons["hs2.test"].Register("charlie")
	club := CreateRoom(t, charlie, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomAliasName: "club"})
	lounge := loungeOf(t, charlie, "8", 50, event.JoinRuleRestricted, club)
	_, err := charlie.InviteUser(ctx(t), lounge, &mautrix.ReqInviteUser{UserID: alice.UserID})
	noErr(t, err, "charlie invites alice")
	waitFor(t, "alice's invite on hs1", func() (bool, bool) {
		_, err := alice.JoinRoom(ctx(t), lounge.String(), &mautrix.ReqJoinRoom{Via: []string{"hs2.test"}})
		return err == nil, err == nil
	})
	_, err = bob.JoinRoom(ctx(t), "#club:hs2.test", nil)
	noErr(t, err, "bob joins the club")
	_, err = bob.JoinRoom(ctx(t), lounge.String(), &mautrix.ReqJoinRoom{Via: []string{"hs1.test"}})
	noErr(t, err, "bob joins the lounge through his own server")
	waitMembership(t, charlie, lounge, bob.UserID, "bob in the lounge, as hs2 sees it", "join")
	wantAuthorisedVia(t, alice, lounge, bob.UserID, charlie.UserID)
}

// wantAuthorisedVia checks, as reader's server has it, that joiner's join
// of roomID names authoriser as join_authorised_via_users_server.
func wantAuthorisedVia(t *testing.T, reader *mautrix.Client, roomID id.RoomID, joiner, authoriser id.UserID) {
	t.Helper()
	var member struct {
		Via string `json:"join_authorised_via_users_server"`
	}
	noErr(t, reader.StateEvent(ctx(t), roomID, event.StateMember, joiner.String(), &member), "read %s's join as %s", joiner, reader.UserID)
	if member.Via != authoriser.String() {
		t.Errorf("%s's join was authorised via %q, want %s", joiner, member.Via, authoriser)
	}
}

// allowMembersOf is the initial state of a room whose join rule (restricted
// or knock_restricted) lets the members of club in.
func allowMembersOf(rule event.JoinRule, club id.RoomID) []*event.Event {
	return []*event.Event{{Type: event.StateJoinRules, Content: event.Content{Parsed: &event.JoinRulesEventContent{
		JoinRule: rule,
		Allow:    []event.JoinRuleAllow{{Type: event.JoinRuleAllowRoomMembership, RoomID: club}},
	}}}}
}
