package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/hearth-chat/hearth/internal/room"
)

// sealedCrypto stands in for the E2EE device in the agent's own tests,
// which are about what the agent does around decryption and encryption
// (which events it decrypts, in what order, within what bound, and that
// it sends encrypted in an encrypted room), not about Olm: an "encrypted"
// event carries its type and content in the clear under algorithm
// test.sealed. Real encryption is proven end to end in
// internal/e2e/calls_e2ee_test.go.
type sealedCrypto struct {
	gate      chan struct{} // if set, Decrypt waits until it is closed
	entered   atomic.Int64  // Decrypt calls
	decrypted atomic.Int64  // Decrypt calls past the gate
}

type sealed struct {
	Algorithm string          `json:"algorithm"`
	Type      string          `json:"sealed_type"`
	Content   json.RawMessage `json:"sealed_content"`
}

func (s *sealedCrypto) Run(ctx context.Context) { <-ctx.Done() }

func (s *sealedCrypto) Decrypt(ctx context.Context, _ string, ev *room.ClientEvent) (string, json.RawMessage, error) {
	s.entered.Add(1)
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return "", nil, ctx.Err()
		}
	}
	s.decrypted.Add(1)
	var m sealed
	if err := json.Unmarshal(ev.Content, &m); err != nil || m.Algorithm != "test.sealed" {
		return "", nil, fmt.Errorf("not sealed: %s", ev.Content)
	}
	return m.Type, m.Content, nil
}

func (s *sealedCrypto) Encrypt(_ context.Context, _, typ string, content json.RawMessage) (json.RawMessage, error) {
	return json.Marshal(sealed{Algorithm: "test.sealed", Type: typ, Content: content})
}

func (s *sealedCrypto) EncryptFile(data []byte) ([]byte, func(string) any) {
	return data, func(mxc string) any { return map[string]any{"url": mxc} }
}

func seal(typ string, content map[string]any) map[string]any {
	raw, _ := json.Marshal(content)
	return map[string]any{"algorithm": "test.sealed", "sealed_type": typ, "sealed_content": json.RawMessage(raw)}
}

// TestEncryptedInviteAnswered: in an encrypted room echo's device
// decrypts the invite, answers it with an encrypted m.call.answer and
// sends nothing of the call in the clear; the caller's encrypted hang-up
// ends the call.
func TestEncryptedInviteAnswered(t *testing.T) {
	sc := &sealedCrypto{}
	e := newEnv(t, Config{Echo: Party{UserID: echo.UserID, DeviceID: echo.DeviceID, Crypto: sc},
		Encrypted: func(string) bool { return true }})
	alice := user("alice")
	roomID := e.room(alice, echo.UserID)
	e.agent.Start()
	base := runtime.NumGoroutine()
	c := newCaller(e, alice, roomID)
	offer, err := c.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(c.pc)
	if err := c.pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	e.send(alice, roomID, evEncrypted, seal(evInvite, map[string]any{"call_id": c.callID, "party_id": c.party,
		"version": "1", "lifetime": 60000, "offer": map[string]any{"type": "offer", "sdp": c.pc.LocalDescription().SDP}}))
	ev := e.waitFor(&c.pos, 10*time.Second, "encrypted answer", func(ev *room.ClientEvent) bool {
		if isCallEvent(ev.Type) && ev.Sender == echo.UserID {
			t.Fatalf("echo sent %s in the clear in an encrypted room", ev.Type)
		}
		var m sealed
		return ev.Type == evEncrypted && ev.Sender == echo.UserID && json.Unmarshal(ev.Content, &m) == nil && m.Type == evAnswer
	})
	var m sealed
	json.Unmarshal(ev.Content, &m)
	ans, err := parseCall(m.Content)
	if err != nil || ans.CallID != c.callID || ans.PartyID != echo.DeviceID || ans.Answer == nil {
		t.Fatalf("answer: %v %s", err, m.Content)
	}
	e.send(alice, roomID, evEncrypted, seal(evHangup, map[string]any{"call_id": c.callID, "party_id": c.party,
		"version": "1", "reason": "user_hangup"}))
	c.pc.GracefulClose()
	settle(t, e.agent, base)
}

// TestEncryptedEventsBounded: encrypted events of rooms where the agent
// would not act are never decrypted; in a room echo is in, a flood of
// encrypted events whose keys do not come (Decrypt waits) neither holds
// up the follower nor queues without bound: past maxEncryptedQueue they
// are dropped.
func TestEncryptedEventsBounded(t *testing.T) {
	sc := &sealedCrypto{gate: make(chan struct{})}
	e := newEnv(t, Config{Echo: Party{UserID: echo.UserID, DeviceID: echo.DeviceID, Crypto: sc},
		Encrypted: func(string) bool { return true }})
	alice, bob := user("alice"), user("bob")
	withEcho := e.room(alice, echo.UserID)
	without := e.room(alice, bob)
	e.agent.Start()
	noise := seal("m.room.message", map[string]any{"msgtype": "m.text", "body": "hello"})
	for range 5 {
		e.send(alice, without, evEncrypted, noise)
	}
	e.handled()
	if n, q := sc.entered.Load(), len(e.agent.decrypt); n != 0 || q != 0 {
		t.Fatalf("events of a room without echo given to decryption: %d decrypted, %d queued", n, q)
	}
	flood := maxEncryptedQueue + 40
	for range flood {
		e.send(alice, withEcho, evEncrypted, noise)
	}
	e.handled() // the follower went past every event while Decrypt waits
	close(sc.gate)
	e.send(alice, withEcho, evEncrypted, noise) // queued after the flood: once decrypted, the queue is drained
	deadline := time.Now().Add(10 * time.Second)
	for len(e.agent.decrypt) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the decryption queue did not drain: %d left", len(e.agent.decrypt))
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.agent.Stop()
	// One taken by the decryptor, then the queue's worth, then maybe the
	// last if there was room; never the whole flood, never the other room.
	if n := sc.decrypted.Load(); n > int64(maxEncryptedQueue)+2 || n < int64(maxEncryptedQueue) {
		t.Fatalf("%d events decrypted of a flood of %d, want about the queue's %d", n, flood, maxEncryptedQueue)
	}
}

// TestEncryptedVoicemailNotWhenOwnerAnswers: in an encrypted 1:1 room the
// voicemail device decrypts the invite and rings; another device of the
// owner answers (encrypted too), and voicemail stops ringing without
// answering.
func TestEncryptedVoicemailNotWhenOwnerAnswers(t *testing.T) {
	sc := &sealedCrypto{}
	e, _, _ := newVoicemailEnv(t, Config{VoicemailAfter: time.Hour, Encrypted: func(string) bool { return true },
		Owner: Party{UserID: owner.UserID, DeviceID: owner.DeviceID, Crypto: sc}})
	alice := user("alice")
	roomID := e.room(alice, owner.UserID)
	e.agent.Start()
	base := runtime.NumGoroutine()
	c := newCaller(e, alice, roomID)
	e.send(alice, roomID, evEncrypted, seal(evInvite, map[string]any{"call_id": c.callID, "party_id": c.party,
		"version": "1", "lifetime": 60000, "offer": map[string]any{"type": "offer", "sdp": "v=0"}}))
	deadline := time.Now().Add(10 * time.Second)
	for e.agent.Active() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("voicemail is not ringing for the encrypted invite")
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.send(owner.UserID, roomID, evEncrypted, seal(evAnswer, map[string]any{"call_id": c.callID, "party_id": "PHONE",
		"version": "1", "answer": map[string]any{"type": "answer", "sdp": "v=0"}}))
	c.pc.GracefulClose()
	settle(t, e.agent, base)
	cur, _ := e.rooms.Pos()
	e.rooms.PushEventsAfter(c.start, cur, func(pe *room.PushEvent) error {
		var m sealed
		if pe.Event.Sender == owner.UserID && json.Unmarshal(pe.Event.Content, &m) == nil && m.Type == evAnswer {
			if cc, err := parseCall(m.Content); err == nil && cc.PartyID == owner.DeviceID {
				t.Errorf("voicemail answered a call the owner took")
			}
		}
		return nil
	})
}
