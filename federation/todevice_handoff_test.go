package federation

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// TestToDeviceHandOff: Config.ToDevice (the application services' queue,
// MSC4203) hears an m.direct_to_device EDU's messages as they were queued
// for local devices: "*" expanded, nothing of a sender not of the origin,
// nothing for another server's users, nothing a stranger sends past its
// cap.
func TestToDeviceHandOff(t *testing.T) {
	ctx := context.Background()
	n := newUKNet()
	hs1, _, alice, bob, _ := sharedRoom(t, n, true)
	type heard struct {
		sender, typ string
		messages    map[string]map[string]json.RawMessage
	}
	var got []heard
	hs1.svc.cfg.ToDevice = func(_ context.Context, sender, evType string, messages map[string]map[string]json.RawMessage,
		_ func(string) ([]string, error)) {
		got = append(got, heard{sender, evType, messages})
	}
	send := func(origin, content string) {
		hs1.svc.receiveEDU(ctx, spec.ServerName(origin), gomatrixserverlib.EDU{Type: spec.MDirectToDevice, Content: spec.RawJSON(content)})
	}

	send("hs2.test", fmt.Sprintf(`{"sender":"@eve:hs3.test","type":"m.forged","message_id":"f1","messages":{%q:{"*":{}}}}`, alice))
	send("hs2.test", fmt.Sprintf(`{"sender":%q,"type":"m.elsewhere","message_id":"f2","messages":{"@carol:hs3.test":{"*":{}}}}`, bob))
	if len(got) != 0 {
		t.Fatalf("forged or foreign to-device messages were handed on: %+v", got)
	}
	send("hs2.test", fmt.Sprintf(`{"sender":%q,"type":"m.test","message_id":"b1","messages":{%q:{"*":{"hi":1},"NODEV":{}},"@carol:hs3.test":{"*":{}}}}`, bob, alice))
	if len(got) != 1 || got[0].sender != bob || got[0].typ != "m.test" || len(got[0].messages) != 1 ||
		len(got[0].messages[alice]) != 1 || string(got[0].messages[alice]["ADEV"]) != `{"hi":1}` {
		t.Fatalf("bob's message to all alice's devices was handed on as %+v", got)
	}

	got = nil
	const eve = "@eve:hs3.test"
	for i := range strangerToDevicePending + 5 {
		send("hs3.test", fmt.Sprintf(`{"sender":%q,"type":"m.test","message_id":"e%d","messages":{%q:{"ADEV":{}}}}`, eve, i, alice))
	}
	if len(got) != strangerToDevicePending {
		t.Fatalf("a stranger's messages handed on: %d, want the cap %d", len(got), strangerToDevicePending)
	}
}

// TestToDeviceMessageIDOnce: an m.direct_to_device EDU sent again with
// the same sender and message_id (in a later transaction, its server not
// having heard our answer) is delivered once, to the device and to the
// appservices; another message_id, or the same one of another sender, is
// delivered.
func TestToDeviceMessageIDOnce(t *testing.T) {
	ctx := context.Background()
	n := newUKNet()
	hs1, _, alice, bob, _ := sharedRoom(t, n, true)
	handed := 0
	hs1.svc.cfg.ToDevice = func(context.Context, string, string, map[string]map[string]json.RawMessage, func(string) ([]string, error)) {
		handed++
	}
	send := func(sender, msgID string) {
		content := fmt.Sprintf(`{"sender":%q,"type":"m.test","message_id":%q,"messages":{%q:{"ADEV":{}}}}`, sender, msgID, alice)
		hs1.svc.receiveEDU(ctx, spec.ServerName("hs2.test"), gomatrixserverlib.EDU{Type: spec.MDirectToDevice, Content: spec.RawJSON(content)})
	}
	queued := func() int {
		msgs, _, err := hs1.keys.ToDevice(ctx, alice, "ADEV", 0, 1<<62)
		if err != nil {
			t.Fatal(err)
		}
		return len(msgs)
	}
	before := queued()
	send(bob, "once")
	send(bob, "once")
	if got := queued() - before; got != 1 || handed != 1 {
		t.Fatalf("one message sent twice: %d queued, %d handed to appservices, want 1 and 1", got, handed)
	}
	send(bob, "twice")
	send("@bobby:hs2.test", "once")
	if got := queued() - before; got != 3 || handed != 3 {
		t.Fatalf("other message IDs and senders: %d queued, %d handed on, want 3 and 3", got, handed)
	}
	// The schema's limit is 32 code points, not bytes.
	send(bob, strings.Repeat("é", 32))
	send(bob, strings.Repeat("x", 33))
	if got := queued() - before; got != 4 || handed != 4 {
		t.Fatalf("message IDs of 32 and 33 code points: %d queued, %d handed on, want only the first (4 and 4)", got, handed)
	}
}

// TestSeenMessageIDsBound: the memory of message IDs keeps the newest
// maxSeenMessageIDs; a released claim keeps its one slot.
func TestSeenMessageIDsBound(t *testing.T) {
	var s seenMessageIDs
	for i := range maxSeenMessageIDs + 10 {
		if !s.claim("@a:x", fmt.Sprint(i)) {
			t.Fatalf("message %d taken for a copy", i)
		}
	}
	if len(s.keys) != maxSeenMessageIDs || len(s.ring) != maxSeenMessageIDs {
		t.Fatalf("%d keys in %d slots, want %d", len(s.keys), len(s.ring), maxSeenMessageIDs)
	}
	if !s.claim("@a:x", "0") {
		t.Fatal("the oldest ID, forgotten, was taken for a copy")
	}
	if s.claim("@a:x", fmt.Sprint(maxSeenMessageIDs+9)) {
		t.Fatal("the newest ID was not remembered")
	}
	s.release("@a:x", "0")
	if !s.claim("@a:x", "0") || len(s.keys) != maxSeenMessageIDs {
		t.Fatalf("a released claim: claimed again with %d keys", len(s.keys))
	}
}
