package room

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/hearth-chat/hearth/internal/store"
)

// TestIngestBatchUsesPrecheckOnlyForSameAuthEvents: check 4 run ahead
// (PrecheckAuth, beside a transaction's signature checks) decides an
// event in IngestBatch when the auth events the writer loads are the
// objects the precheck saw, and is ignored otherwise: a precheck over
// other copies of the auth events (an event cache entry since parsed
// again) saying "refused" does not keep out a message the auth rules
// allow.
func TestIngestBatchUsesPrecheckOnlyForSameAuthEvents(t *testing.T) {
	e, _ := newEngine(t)
	ctx := context.Background()
	roomID, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	const bob2 = "@bob:hs2.test"
	remoteMember(t, e, roomID, bob2, bob2, "join")
	build := func(sender, body string) gomatrixserverlib.PDU {
		t.Helper()
		var pdu gomatrixserverlib.PDU
		err := e.db.View(func(tx *store.Tx) error {
			info, err := roomInfo(tx, roomID)
			if err != nil {
				return err
			}
			pdu, err = e.build(tx, info, message(roomID, sender, body))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return pdu
	}

	// The precheck's answer is the one used when its auth events are
	// the ones found: here one made up, to see that it is.
	msg := build(bob2, "hello")
	pre := e.PrecheckAuth(msg)
	if pre == nil || pre.err != nil {
		t.Fatalf("bob's message prechecked as %+v, want allowed", pre)
	}
	pre.err = errors.New("made-up refusal")
	res, _ := e.IngestBatch(ctx, []gomatrixserverlib.PDU{msg}, []*AuthPrecheck{pre}, nil)
	if res[0] == nil || !strings.Contains(res[0].Error(), "made-up refusal") {
		t.Fatalf("with a precheck over the same auth events: %v, want its answer", res[0])
	}

	// Over other copies of the same events it is not used: the writer
	// runs the check itself.
	msg2 := build(bob2, "hello again")
	pre2 := e.PrecheckAuth(msg2)
	if pre2 == nil || pre2.err != nil {
		t.Fatalf("bob's second message prechecked as %+v, want allowed", pre2)
	}
	copies := make([]gomatrixserverlib.PDU, len(pre2.auth))
	for i, a := range pre2.auth {
		if copies[i], err = gomatrixserverlib.MustGetRoomVersion(a.Version()).NewEventFromTrustedJSONWithEventID(a.EventID(), a.JSON(), a.Redacted()); err != nil {
			t.Fatal(err)
		}
	}
	res, _ = e.IngestBatch(ctx, []gomatrixserverlib.PDU{msg2}, []*AuthPrecheck{{auth: copies, err: errors.New("made-up refusal")}}, nil)
	if res[0] != nil {
		t.Fatalf("with a precheck over copies of the auth events: %v, want the writer's own answer (allowed)", res[0])
	}
}
