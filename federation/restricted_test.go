package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
)

// TestRestrictedJoinFailover follows Complement's three-server restricted
// join (Server-Server API §"Restricted rooms"): alice@hs1 runs a room
// restricted to the members of her club, where only she may invite.
// bob@hs2 is in both rooms, so hs2 is resident but cannot vouch for a
// join: its make_join answers M_UNABLE_TO_GRANT_JOIN for a club member,
// M_FORBIDDEN for anyone else, and M_UNABLE_TO_AUTHORISE_JOIN once it has
// left the club and cannot tell. charlie@hs3 joining through hs2 alone is
// refused with 403; through hs2 then hs1 he gets in, authorised by alice.
func TestRestrictedJoinFailover(t *testing.T) {
	ctx := context.Background()
	n := newUKNet()
	hs1, hs2, hs3 := newUKServer(t, n, "hs1.test", true), newUKServer(t, n, "hs2.test", true), newUKServer(t, n, "hs3.test", true)
	alice := hs1.addUser(t, "alice", "A", false)
	bob := hs2.addUser(t, "bob", "B", false)
	charlie := hs3.addUser(t, "charlie", "C", false)
	dave := hs3.addUser(t, "dave", "D", false)

	club, err := hs1.rooms.CreateRoom(ctx, alice, room.Profile{}, room.CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	jr := fmt.Sprintf(`{"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":%q,"via":["hs1.test"]}]}`, club)
	lounge, err := hs1.rooms.CreateRoom(ctx, alice, room.Profile{}, room.CreateRequest{Preset: "public_chat", RoomVersion: "8",
		PowerLevelContentOverride: json.RawMessage(fmt.Sprintf(`{"invite":100,"users":{%q:100}}`, alice)),
		InitialState:              []room.StateEvent{{Type: "m.room.join_rules", Content: json.RawMessage(jr)}}})
	if err != nil {
		t.Fatal(err)
	}
	joinVia := func(s *ukServer, user, roomID string, via ...string) error {
		return s.svc.JoinRoom(ctx, user, roomID, via, map[string]any{"membership": "join"})
	}
	for _, step := range []struct {
		s          *ukServer
		user, room string
	}{{hs2, bob, club}, {hs2, bob, lounge}, {hs3, charlie, club}} {
		if err := joinVia(step.s, step.user, step.room, "hs1.test"); err != nil {
			t.Fatalf("%s joins %s: %v", step.user, step.room, err)
		}
	}
	ukWaitFor(t, "hs2 sees charlie in the club", func() bool {
		p := hs2.rooms.CurrentStatePDU(club, "m.room.member", charlie)
		m, _ := membershipOf(p)
		return m == "join"
	})

	makeJoin := func(server, user string) (int, string) {
		code, errcode, _ := hs3.call(t, "GET", server, "/_matrix/federation/v1/make_join/"+url.PathEscape(lounge)+"/"+url.PathEscape(user)+"?ver=8", nil)
		return code, errcode
	}
	if code, errcode := makeJoin("hs2.test", charlie); code != http.StatusBadRequest || errcode != "M_UNABLE_TO_GRANT_JOIN" {
		t.Errorf("make_join on hs2 for a club member: %d %s, want 400 M_UNABLE_TO_GRANT_JOIN", code, errcode)
	}
	if code, errcode := makeJoin("hs2.test", dave); code != http.StatusForbidden || errcode != "M_FORBIDDEN" {
		t.Errorf("make_join on hs2 for a stranger: %d %s, want 403 M_FORBIDDEN", code, errcode)
	}

	err = joinVia(hs3, charlie, lounge, "hs2.test")
	var me *matrixerr.Error
	if !errors.As(err, &me) || me.Status != http.StatusForbidden || me.Code != "M_UNABLE_TO_GRANT_JOIN" {
		t.Fatalf("charlie joining through hs2 alone: %v, want 403 M_UNABLE_TO_GRANT_JOIN", err)
	}
	if err := joinVia(hs3, charlie, lounge, "hs2.test", "hs1.test"); err != nil {
		t.Fatalf("charlie joining through hs2 then hs1: %v", err)
	}
	if m, via := authorisedVia(hs3.rooms, lounge, charlie); m != "join" || via != alice {
		t.Errorf("charlie's join on hs3: %s via %q, want join authorised via %s", m, via, alice)
	}

	// send_join: hs1 countersigns no join that names alice for a user who
	// meets no condition, whoever built it.
	sk := dave
	_, priv := newEd25519(t)
	eb := gomatrixserverlib.MustGetRoomVersion("8").NewEventBuilderFromProtoEvent(&gomatrixserverlib.ProtoEvent{
		SenderID: dave, RoomID: lounge, Type: "m.room.member", StateKey: &sk, PrevEvents: []string{}, AuthEvents: []string{}, Depth: 9,
		Content: spec.RawJSON(fmt.Sprintf(`{"membership":"join","join_authorised_via_users_server":%q}`, alice))})
	forged, err := eb.Build(time.Now(), "hs3.test", "ed25519:t", priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := hs1.svc.checkAuthorisedJoin(lounge, forged); !errors.As(err, &me) || me.Code != "M_FORBIDDEN" {
		t.Errorf("send_join of a join authorised for a stranger: %v, want M_FORBIDDEN", err)
	}

	// Without a member in the club, hs2 cannot tell who is in it.
	if _, err := hs2.rooms.ChangeMembership(ctx, room.MembershipRequest{Sender: bob, RoomID: club, Target: bob, Membership: "leave"}); err != nil {
		t.Fatal(err)
	}
	if code, errcode := makeJoin("hs2.test", dave); code != http.StatusBadRequest || errcode != "M_UNABLE_TO_AUTHORISE_JOIN" {
		t.Errorf("make_join on hs2 outside the club: %d %s, want 400 M_UNABLE_TO_AUTHORISE_JOIN", code, errcode)
	}
}

func membershipOf(p interface{ Membership() (string, error) }) (string, error) {
	if p == nil {
		return "", nil
	}
	return p.Membership()
}

// TestRestrictedJoinNeedsAuthoriserSignature: the joining server checks
// that the join a resident server returns from send_join carries the
// signature of the authorising user's server (Server-Server API
// §"Restricted rooms"); here a proxy in front of hs1 strips it.
func TestRestrictedJoinNeedsAuthoriserSignature(t *testing.T) {
	ctx := context.Background()
	n := newUKNet()
	hs1, hs2 := newUKServer(t, n, "hs1.test", false), newUKServer(t, n, "hs2.test", false)
	alice := hs1.addUser(t, "alice", "A", false)
	bob := hs2.addUser(t, "bob", "B", false)
	club, err := hs1.rooms.CreateRoom(ctx, alice, room.Profile{}, room.CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	jr := fmt.Sprintf(`{"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":%q}]}`, club)
	lounge, err := hs1.rooms.CreateRoom(ctx, alice, room.Profile{}, room.CreateRequest{RoomVersion: "9",
		InitialState: []room.StateEvent{{Type: "m.room.join_rules", Content: json.RawMessage(jr)}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := hs2.svc.JoinRoom(ctx, bob, club, []string{"hs1.test"}, map[string]any{"membership": "join"}); err != nil {
		t.Fatal(err)
	}

	real := n.servers["hs1.test"]
	proxy := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := r.Clone(r.Context())
		out.RequestURI = ""
		out.URL.Scheme, out.URL.Host = "https", real.Listener.Addr().String()
		res, err := real.Client().Transport.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		if strings.Contains(r.URL.Path, "/send_join/") {
			var m map[string]json.RawMessage
			if json.Unmarshal(body, &m) == nil && m["event"] != nil {
				var ev map[string]any
				json.Unmarshal(m["event"], &ev)
				if sigs, ok := ev["signatures"].(map[string]any); ok {
					delete(sigs, "hs1.test")
				}
				m["event"], _ = json.Marshal(ev)
				body, _ = json.Marshal(m)
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(res.StatusCode)
		w.Write(body)
	}))
	t.Cleanup(proxy.Close)
	n.mu.Lock()
	n.servers["hs1.test"] = proxy
	n.mu.Unlock()

	err = hs2.svc.JoinRoom(ctx, bob, lounge, []string{"hs1.test"}, map[string]any{"membership": "join"})
	if err == nil || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("join through a server that dropped its signature: %v, want refused", err)
	}
	if p := hs2.rooms.CurrentStatePDU(lounge, "m.room.member", bob); p != nil {
		t.Errorf("hs2 stored bob's join anyway: %s", p.JSON())
	}
}

// TestRestrictedJoinOfLocalUserThroughResident: hs2 is in the restricted
// room, but its only member there may not invite, so a local user who
// qualifies joins through hs1, whose user vouches for him; hs2 takes the
// join into the room it already has.
func TestRestrictedJoinOfLocalUserThroughResident(t *testing.T) {
	ctx := context.Background()
	n := newUKNet()
	hs1, hs2 := newUKServer(t, n, "hs1.test", true), newUKServer(t, n, "hs2.test", true)
	charlie := hs1.addUser(t, "charlie", "C", false)
	alice, bob := hs2.addUser(t, "alice", "A", false), hs2.addUser(t, "bob", "B", false)
	club, err := hs1.rooms.CreateRoom(ctx, charlie, room.Profile{}, room.CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	jr := fmt.Sprintf(`{"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":%q}]}`, club)
	lounge, err := hs1.rooms.CreateRoom(ctx, charlie, room.Profile{}, room.CreateRequest{Preset: "public_chat", RoomVersion: "8",
		PowerLevelContentOverride: json.RawMessage(fmt.Sprintf(`{"invite":50,"users":{%q:100}}`, charlie)),
		InitialState:              []room.StateEvent{{Type: "m.room.join_rules", Content: json.RawMessage(jr)}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hs1.svc.Invite(ctx, room.MembershipRequest{Sender: charlie, RoomID: lounge, Target: alice, Membership: "invite"}); err != nil {
		t.Fatal(err)
	}
	for _, j := range []struct{ user, room string }{{alice, lounge}, {bob, club}} {
		if err := hs2.svc.JoinRoom(ctx, j.user, j.room, []string{"hs1.test"}, map[string]any{"membership": "join"}); err != nil {
			t.Fatalf("%s joins %s: %v", j.user, j.room, err)
		}
	}
	if _, err := hs2.rooms.JoinAuthoriser(lounge, bob); errCode(err) != "M_UNABLE_TO_GRANT_JOIN" {
		t.Fatalf("hs2 on its own: %v, want M_UNABLE_TO_GRANT_JOIN", err)
	}
	if err := hs2.svc.JoinRoom(ctx, bob, lounge, []string{"hs1.test"}, map[string]any{"membership": "join"}); err != nil {
		t.Fatalf("bob joins through hs1: %v", err)
	}
	if m, via := authorisedVia(hs2.rooms, lounge, bob); m != "join" || via != charlie {
		t.Fatalf("bob's join on hs2: %s via %q, want join authorised via %s", m, via, charlie)
	}
	// The room goes on as one room on hs2: alice can still speak in it.
	if _, err := hs2.rooms.Send(ctx, room.SendRequest{Sender: alice, RoomID: lounge, Type: "m.room.message",
		Content: json.RawMessage(`{"body":"hi"}`), TxnID: "1", Device: "A"}); err != nil {
		t.Fatal(err)
	}
	ukWaitFor(t, "hs1 sees bob joined", func() bool {
		m, _ := membershipOf(hs1.rooms.CurrentStatePDU(lounge, "m.room.member", bob))
		return m == "join"
	})
}

func errCode(err error) string {
	var me *matrixerr.Error
	if errors.As(err, &me) {
		return me.Code
	}
	return ""
}

// authorisedVia reads user's member event in roomID as rooms has it: the
// membership and who authorised the join (join_authorised_via_users_server).
func authorisedVia(rooms *room.Engine, roomID, user string) (membership, via string) {
	var c struct {
		Membership string `json:"membership"`
		Via        string `json:"join_authorised_via_users_server"`
	}
	if ev := rooms.CurrentStatePDU(roomID, "m.room.member", user); ev != nil {
		json.Unmarshal(ev.Content(), &c)
	}
	return c.Membership, c.Via
}
