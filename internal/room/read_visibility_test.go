package room

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"testing"
)

// TestHistoryVisibility follows bob through a room under each
// history_visibility setting and checks which of alice's messages he can
// page through: before his invite, between invite and join, while joined,
// and after he left.
func TestHistoryVisibility(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		hv   string
		want string // which phases bob sees: b(efore invite) i(nvited) j(oined) a(fter leaving)
	}{
		{"shared", "bij"},
		{"invited", "ij"},
		{"joined", "j"},
		{"world_readable", "bija"},
	} {
		t.Run(tc.hv, func(t *testing.T) {
			e, _ := newEngine(t)
			roomID, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "private_chat"})
			if err != nil {
				t.Fatal(err)
			}
			sk := ""
			mustSend(t, e, SendRequest{Sender: alice, RoomID: roomID, Type: "m.room.history_visibility", StateKey: &sk,
				Content: json.RawMessage(fmt.Sprintf(`{"history_visibility":%q}`, tc.hv))})
			say := func(phase string) { mustSend(t, e, message(roomID, alice, phase)) }
			change := func(sender, membership string) {
				if _, err := e.ChangeMembership(ctx, MembershipRequest{Sender: sender, RoomID: roomID, Target: bob, Membership: membership}); err != nil {
					t.Fatal(err)
				}
			}
			say("b")
			change(alice, "invite")
			say("i")
			change(bob, "join")
			say("j")
			change(bob, "leave")
			say("a")

			page, err := e.Messages(bob, "", roomID, math.MaxUint64-1, 0, Backward, EventFilter{Limit: 100, Types: []string{"m.room.message"}})
			if err != nil {
				if tc.want != "" {
					t.Fatal(err)
				}
				return
			}
			seen := ""
			for i := len(page.Chunk) - 1; i >= 0; i-- {
				var c struct{ Body string }
				json.Unmarshal(page.Chunk[i].Content, &c)
				seen += c.Body
			}
			if seen != tc.want {
				t.Fatalf("bob sees %q, want %q", seen, tc.want)
			}
			// A user who was never in the room sees it only if world readable.
			_, err = e.Messages("@carol:test.local", "", roomID, math.MaxUint64-1, 0, Backward, EventFilter{Limit: 10})
			if (err == nil) != (tc.hv == "world_readable") {
				t.Fatalf("outsider read the room: err %v", err)
			}
		})
	}
}

func message(roomID, sender, body string) SendRequest {
	return SendRequest{Sender: sender, RoomID: roomID, Type: "m.room.message",
		Content: json.RawMessage(fmt.Sprintf(`{"msgtype":"m.text","body":%q}`, body))}
}

func mustSend(t *testing.T, e *Engine, req SendRequest) string {
	t.Helper()
	id, err := e.Send(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
