package room

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// errCode is the Matrix errcode of err, or "" if it is not a Matrix error.
func errCode(err error) string {
	var me *matrixerr.Error
	if errors.As(err, &me) {
		return me.Code
	}
	return ""
}

// restrictedRoom creates a public "club" and a room whose join rule
// (restricted or knock_restricted) allows the club's members.
func restrictedRoom(t *testing.T, e *Engine, version, rule string) (club, lounge string) {
	t.Helper()
	ctx := context.Background()
	club, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	jr := fmt.Sprintf(`{"join_rule":%q,"allow":[{"type":"m.room_membership","room_id":%q}]}`, rule, club)
	lounge, err = e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat", RoomVersion: version,
		InitialState: []StateEvent{{Type: "m.room.join_rules", Content: json.RawMessage(jr)}}})
	if err != nil {
		t.Fatalf("create the restricted room: %v", err)
	}
	return club, lounge
}

func join(e *Engine, user, roomID string) error {
	_, err := e.ChangeMembership(context.Background(), MembershipRequest{Sender: user, RoomID: roomID, Target: user, Membership: "join"})
	return err
}

func leave(e *Engine, user, roomID string) error {
	_, err := e.ChangeMembership(context.Background(), MembershipRequest{Sender: user, RoomID: roomID, Target: user, Membership: "leave"})
	return err
}

// authorisedVia is join_authorised_via_users_server of user's member event.
func authorisedVia(t *testing.T, e *Engine, roomID, user string) string {
	t.Helper()
	var c struct {
		Via string `json:"join_authorised_via_users_server"`
	}
	json.Unmarshal(e.CurrentStatePDU(roomID, "m.room.member", user).Content(), &c)
	return c.Via
}

// TestRestrictedLocalJoin follows Complement's restricted-room checks on
// one server (Client-Server API §"Restricted rooms"): a member of the
// allowed room joins, authorised by a local user who may invite; others
// are refused with 403 M_FORBIDDEN; an invited user needs no authoriser.
func TestRestrictedLocalJoin(t *testing.T) {
	for _, tc := range []struct{ version, rule string }{{"8", "restricted"}, {"10", "knock_restricted"}, {"12", "restricted"}} {
		t.Run(tc.version+"/"+tc.rule, func(t *testing.T) {
			ctx := context.Background()
			e, _ := newEngine(t)
			club, lounge := restrictedRoom(t, e, tc.version, tc.rule)
			if err := join(e, bob, lounge); errCode(err) != "M_FORBIDDEN" {
				t.Fatalf("bob, in no allowed room, joined: %v", err)
			}
			if err := join(e, bob, club); err != nil {
				t.Fatal(err)
			}
			if err := join(e, bob, lounge); err != nil {
				t.Fatalf("bob, in the club, may not join: %v", err)
			}
			if via := authorisedVia(t, e, lounge, bob); via != alice {
				t.Errorf("join authorised via %q, want %s", via, alice)
			}
			// A join over a join (a profile change) needs no authoriser,
			// whatever the client put in it.
			sk := bob
			if _, err := e.Send(ctx, SendRequest{Sender: bob, RoomID: lounge, Type: "m.room.member", StateKey: &sk,
				Content: json.RawMessage(`{"membership":"join","displayname":"Bobby","join_authorised_via_users_server":"unused"}`)}); err != nil {
				t.Fatalf("join over join: %v", err)
			}
			if err := leave(e, bob, lounge); err != nil {
				t.Fatal(err)
			}
			if err := leave(e, bob, club); err != nil {
				t.Fatal(err)
			}
			if err := join(e, bob, lounge); errCode(err) != "M_FORBIDDEN" {
				t.Fatalf("bob joined after leaving the club: %v", err)
			}
			if _, err := e.ChangeMembership(ctx, MembershipRequest{Sender: alice, RoomID: lounge, Target: bob, Membership: "invite"}); err != nil {
				t.Fatal(err)
			}
			if err := join(e, bob, lounge); err != nil {
				t.Fatalf("invited bob may not join: %v", err)
			}
			if via := authorisedVia(t, e, lounge, bob); via != "" {
				t.Errorf("an invited join names an authoriser: %q", via)
			}
		})
	}
}

// TestRestrictedJoinMangledRule: an allow list that is not a list of
// conditions leaves the room invite-only.
func TestRestrictedJoinMangledRule(t *testing.T) {
	ctx := context.Background()
	e, _ := newEngine(t)
	club, lounge := restrictedRoom(t, e, "8", "restricted")
	if err := join(e, bob, club); err != nil {
		t.Fatal(err)
	}
	sk := ""
	for _, allow := range []string{`["invalid"]`, `"invalid"`} {
		if _, err := e.Send(ctx, SendRequest{Sender: alice, RoomID: lounge, Type: "m.room.join_rules", StateKey: &sk,
			Content: json.RawMessage(`{"join_rule":"restricted","allow":` + allow + `}`)}); err != nil {
			t.Fatal(err)
		}
		if err := join(e, bob, lounge); errCode(err) != "M_FORBIDDEN" {
			t.Errorf("allow %s: bob joined: %v", allow, err)
		}
	}
}

// TestJoinAuthoriserChoice: the authoriser is a local user joined to the
// restricted room itself who may invite; when there is none the answer is
// M_UNABLE_TO_GRANT_JOIN, and when this server is not in the allowed room
// M_UNABLE_TO_AUTHORISE_JOIN (Server-Server API §"Restricted rooms").
func TestJoinAuthoriserChoice(t *testing.T) {
	ctx := context.Background()
	e, _ := newEngine(t)
	const carol, dave = "@carol:test.local", "@dave:test.local"
	club, lounge := restrictedRoom(t, e, "8", "restricted")
	for _, u := range []string{bob, dave} {
		if err := join(e, u, club); err != nil {
			t.Fatal(err)
		}
	}
	// dave is in the club, not in the lounge: he cannot vouch for anyone.
	if via, err := e.JoinAuthoriser(lounge, bob); err != nil || via != alice {
		t.Fatalf("authoriser %q, %v; want %s", via, err, alice)
	}
	// Only alice may invite; once she has left, carol (joined, level 0)
	// cannot authorise.
	sk := ""
	pl := fmt.Sprintf(`{"invite":100,"users":{%q:100}}`, alice)
	if _, err := e.Send(ctx, SendRequest{Sender: alice, RoomID: lounge, Type: "m.room.power_levels", StateKey: &sk, Content: json.RawMessage(pl)}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ChangeMembership(ctx, MembershipRequest{Sender: alice, RoomID: lounge, Target: carol, Membership: "invite"}); err != nil {
		t.Fatal(err)
	}
	if err := join(e, carol, lounge); err != nil {
		t.Fatal(err)
	}
	if err := leave(e, alice, lounge); err != nil {
		t.Fatal(err)
	}
	if _, err := e.JoinAuthoriser(lounge, bob); errCode(err) != "M_UNABLE_TO_GRANT_JOIN" {
		t.Errorf("no local user may invite: got %v, want M_UNABLE_TO_GRANT_JOIN", err)
	}
	if err := join(e, bob, lounge); errCode(err) != "M_UNABLE_TO_GRANT_JOIN" {
		t.Errorf("bob's join: %v", err)
	}

	// A rule naming only a room this server is not in cannot be decided here.
	jr := `{"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":"!elsewhere:other.example"}]}`
	far, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{RoomVersion: "8", InitialState: []StateEvent{{Type: "m.room.join_rules", Content: json.RawMessage(jr)}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.JoinAuthoriser(far, bob); errCode(err) != "M_UNABLE_TO_AUTHORISE_JOIN" {
		t.Errorf("unknown allowed room: got %v, want M_UNABLE_TO_AUTHORISE_JOIN", err)
	}
}
