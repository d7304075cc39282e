package room

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/hearth-chat/hearth/internal/store"
)

// remoteMember appends a member event of a user of another server, as
// if it had arrived over federation (the room engine checks auth, not
// signatures, which federation checks before it).
func remoteMember(t *testing.T, e *Engine, roomID, sender, target, membership string) {
	t.Helper()
	remoteMemberOpts(t, e, roomID, sender, target, membership, IngestOptions{})
}

// remoteMemberOpts is remoteMember with ingest options (Relay: accepted
// through send_join).
func remoteMemberOpts(t *testing.T, e *Engine, roomID, sender, target, membership string, opts IngestOptions) {
	t.Helper()
	content, _ := json.Marshal(map[string]string{"membership": membership})
	req := SendRequest{Sender: sender, RoomID: roomID, Type: "m.room.member", StateKey: &target, Content: content}
	if err := remoteEvent(t, e, req, opts); err != nil {
		t.Fatalf("%s %s: %v", target, membership, err)
	}
}

// remoteEvent builds req on the room's head and ingests it, as if it had
// come from the sender's server.
func remoteEvent(t *testing.T, e *Engine, req SendRequest, opts IngestOptions) error {
	t.Helper()
	var pdu gomatrixserverlib.PDU
	err := e.db.View(func(tx *store.Tx) error {
		info, err := roomInfo(tx, req.RoomID)
		if err != nil {
			return err
		}
		pdu, err = e.build(tx, info, req)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return e.Ingest(context.Background(), pdu, opts)
}

// outboundAfter lists the destinations of each outbound event after pos,
// by event type and state key.
func outboundAfter(t *testing.T, e *Engine, pos uint64) (map[string][]string, uint64) {
	t.Helper()
	out := map[string][]string{}
	last := pos
	err := e.db.View(func(tx *store.Tx) error {
		upTo := tx.Pos()
		last = upTo
		return e.OutboundEvents(tx, pos, upTo, func(o Outbound) error {
			ev, err := e.loadEvent(tx, o.NID)
			if err != nil {
				return err
			}
			key := ev.PDU.Type()
			if sk := ev.PDU.StateKey(); sk != nil && *sk != "" {
				key += " " + *sk
			}
			slices.Sort(o.Destinations)
			out[key] = o.Destinations
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out, last
}

func streamPos(e *Engine) uint64 {
	var p uint64
	e.db.View(func(tx *store.Tx) error { p = tx.Pos(); return nil })
	return p
}

// TestOutboundGoesToServersInTheRoom: room events go to the servers with
// a joined member (Server-Server API: "servers in the room"), never to a
// server whose only user is invited (a strict server refuses them; the
// invite reaches it through /invite); a server whose user leaves, is
// kicked or banned still gets that event, as it was in the room before
// it; and the server ACL event reaches the servers it newly denies.
func TestOutboundGoesToServersInTheRoom(t *testing.T) {
	e, _ := newEngine(t)
	ctx := context.Background()
	roomID, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	const bob2, carol3, dan4 = "@bob:hs2.test", "@carol:hs3.test", "@dan:hs4.test"
	remoteMember(t, e, roomID, bob2, bob2, "join")
	mustSend(t, e, message(roomID, alice, "before dan"))
	remoteMember(t, e, roomID, dan4, dan4, "join")
	// Listed late, each event still goes only to the servers that were
	// in the room at it.
	got, pos := outboundAfter(t, e, 0)
	if d, ok := got["m.room.create"]; ok {
		t.Errorf("the create event went to %v, which joined after it", d)
	}
	if d := got["m.room.message"]; !slices.Equal(d, []string{"hs2.test"}) {
		t.Errorf("a message sent before dan joined went to %v, want hs2 only", d)
	}

	if _, err := e.ChangeMembership(ctx, MembershipRequest{Sender: alice, RoomID: roomID, Target: carol3, Membership: "invite"}); err != nil {
		t.Fatal(err)
	}
	mustSend(t, e, message(roomID, alice, "hello"))
	got, pos = outboundAfter(t, e, pos)
	if d := got["m.room.member "+carol3]; !slices.Equal(d, []string{"hs2.test", "hs4.test"}) {
		t.Errorf("carol's invite went to %v, want the joined servers only", d)
	}
	if d := got["m.room.message"]; !slices.Equal(d, []string{"hs2.test", "hs4.test"}) {
		t.Errorf("a message went to %v, want the joined servers only", d)
	}

	// bob is kicked: hs2 has no member left, but learns of the kick.
	if _, err := e.ChangeMembership(ctx, MembershipRequest{Sender: alice, RoomID: roomID, Target: bob2, Membership: "leave", OnlyIfMember: true}); err != nil {
		t.Fatal(err)
	}
	mustSend(t, e, message(roomID, alice, "bob is gone"))
	got, pos = outboundAfter(t, e, pos)
	if d := got["m.room.member "+bob2]; !slices.Equal(d, []string{"hs2.test", "hs4.test"}) {
		t.Errorf("bob's kick went to %v, want hs2 too", d)
	}
	if d := got["m.room.message"]; !slices.Equal(d, []string{"hs4.test"}) {
		t.Errorf("a message after the kick went to %v", d)
	}

	// An ACL denying hs4 reaches hs4; the next message does not.
	sk := ""
	mustSend(t, e, SendRequest{Sender: alice, RoomID: roomID, Type: "m.room.server_acl", StateKey: &sk,
		Content: json.RawMessage(`{"allow":["*"],"deny":["hs4.test"]}`)})
	mustSend(t, e, message(roomID, alice, "hs4 is out"))
	got, _ = outboundAfter(t, e, pos)
	if d := got["m.room.server_acl"]; !slices.Equal(d, []string{"hs4.test"}) {
		t.Errorf("the ACL denying hs4 went to %v, want hs4", d)
	}
	if d, ok := got["m.room.message"]; ok {
		t.Errorf("a message after the ACL went to %v", d)
	}

	// A join this server accepted through send_join goes to the rest of
	// the room, not back to the joiner's server.
	const erin5, fay6 = "@erin:hs5.test", "@fay:hs6.test"
	remoteMember(t, e, roomID, fay6, fay6, "join")
	pos = streamPos(e)
	remoteMemberOpts(t, e, roomID, erin5, erin5, "join", IngestOptions{Relay: true})
	got, _ = outboundAfter(t, e, pos)
	if d := got["m.room.member "+erin5]; !slices.Equal(d, []string{"hs6.test"}) {
		t.Errorf("erin's relayed join went to %v, want hs6 only", d)
	}
}
