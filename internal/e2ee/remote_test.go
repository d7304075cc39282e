package e2ee

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/matrix-org/gomatrixserverlib"
)

// lyingRemote stands in for other servers (federation is tested with real
// servers in package federation): each server answers from a canned reply,
// including things it has no right to say, and the calls are recorded.
type lyingRemote struct {
	mu      sync.Mutex
	queries map[string]*QueryResult
	claims  map[string]map[string]map[string]map[string]json.RawMessage
	sent    []sentEDU
	changes []DeviceListChange
}

type sentEDU struct {
	server, sender, evType, messageID string
	messages                          map[string]map[string]json.RawMessage
}

func (r *lyingRemote) QueryKeys(_ context.Context, server string, _ map[string][]string) (*QueryResult, error) {
	if q := r.queries[server]; q != nil {
		return q, nil
	}
	return nil, errors.New("unreachable")
}

func (r *lyingRemote) ClaimKeys(_ context.Context, server string, _ map[string]map[string]string) (map[string]map[string]map[string]json.RawMessage, error) {
	if c := r.claims[server]; c != nil {
		return c, nil
	}
	return nil, errors.New("unreachable")
}

func (r *lyingRemote) SendToDevice(_ context.Context, server, sender, evType, messageID string, messages map[string]map[string]json.RawMessage) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, sentEDU{server, sender, evType, messageID, messages})
	return nil
}

func (r *lyingRemote) DeviceListChanged(_ context.Context, c DeviceListChange) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, c)
}

const bob, carol = "@bob:b.test", "@carol:c.test"

func dev(user, id string) map[string]any {
	return map[string]any{"user_id": user, "device_id": id, "keys": map[string]any{}}
}

// TestRemoteAnswersAreFiltered: a server's answer counts only for the
// users of that server that were asked about, and for devices under their
// own names; an unreachable server is a failure that costs nobody else.
func TestRemoteAnswersAreFiltered(t *testing.T) {
	s := newService(t)
	r := &lyingRemote{queries: map[string]*QueryResult{"b.test": {
		DeviceKeys: map[string]map[string]map[string]any{
			bob:   {"B1": dev(bob, "B1"), "B2": dev(bob, "OTHER"), "B3": dev(carol, "B3")},
			carol: {"C1": dev(carol, "C1")}, // another server's user
		},
		MasterKeys:      map[string]map[string]any{bob: {"user_id": carol}, carol: {"user_id": carol}},
		SelfSigningKeys: map[string]map[string]any{bob: {"user_id": bob}},
	}}, claims: map[string]map[string]map[string]map[string]json.RawMessage{"b.test": {
		bob:   {"B1": {"other_alg:K": json.RawMessage(`"x"`)}, "B2": {"signed_curve25519:K": json.RawMessage(`{"key":"k"}`)}},
		carol: {"C1": {"signed_curve25519:K": json.RawMessage(`{"key":"k"}`)}},
	}}}
	s.SetRemote(r)
	res, err := s.Query(alice, map[string][]string{bob: {}, carol: {}}, func(string, string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if got := res.DeviceKeys[bob]; len(got) != 1 || got["B1"] == nil {
		t.Errorf("bob's devices: %v, want only B1", got)
	}
	if res.DeviceKeys[carol] != nil || res.MasterKeys[carol] != nil || res.MasterKeys[bob] != nil {
		t.Errorf("b.test spoke for c.test: %v %v", res.DeviceKeys[carol], res.MasterKeys)
	}
	if res.SelfSigningKeys[bob] == nil {
		t.Error("bob's self-signing key was dropped")
	}
	if res.Failures["c.test"] == nil || res.Failures["b.test"] != nil {
		t.Errorf("failures: %v", res.Failures)
	}

	otks, failures, err := s.Claim(context.Background(), map[string]map[string]string{
		bob: {"B1": "signed_curve25519", "B2": "signed_curve25519"}, carol: {"C1": "signed_curve25519"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(otks[bob]) != 1 || otks[bob]["B2"] == nil || otks[carol] != nil {
		t.Errorf("claimed %v, want only bob's B2 (B1's key is of another algorithm)", otks)
	}
	if failures["c.test"] == nil {
		t.Errorf("failures: %v", failures)
	}
}

// TestWithoutFederation: with no Remote, remote users' servers are listed
// as failures and messages to them are dropped, as before federation.
func TestWithoutFederation(t *testing.T) {
	s := newService(t)
	res, err := s.Query(alice, map[string][]string{bob: {}}, func(string, string) string { return "" })
	if err != nil || res.Failures["b.test"] == nil {
		t.Fatalf("query: %v %v", err, res)
	}
	_, failures, err := s.Claim(context.Background(), map[string]map[string]string{bob: {"B1": "signed_curve25519"}})
	if err != nil || failures["b.test"] == nil {
		t.Fatalf("claim: %v %v", err, failures)
	}
	err = s.SendToDevice(context.Background(), alice, aliceDevice, "t", "m.test",
		map[string]map[string]json.RawMessage{bob: {"*": json.RawMessage(`{}`)}}, func(string) ([]string, error) { return nil, nil })
	if err != nil {
		t.Fatal(err)
	}
}

// TestToDeviceToRemoteUsers: messages to remote users leave once per
// server and once per transaction, with one message ID per request that
// fits the spec's 32 characters; local users' messages stay here.
func TestToDeviceToRemoteUsers(t *testing.T) {
	s := newService(t)
	r := &lyingRemote{}
	s.SetRemote(r)
	msgs := map[string]map[string]json.RawMessage{
		bob: {"*": json.RawMessage(`{"n":1}`)}, "@dave:b.test": {"D": json.RawMessage(`{"n":2}`)},
		carol: {"C1": json.RawMessage(`{"n":3}`)}, alice: {aliceDevice: json.RawMessage(`{"n":4}`)},
	}
	devices := func(string) ([]string, error) { return []string{aliceDevice}, nil }
	for range 2 { // the client retries the same transaction
		if err := s.SendToDevice(context.Background(), alice, aliceDevice, "txn", "m.test", msgs, devices); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.sent) != 2 {
		t.Fatalf("sent %d EDUs, want one per server once: %+v", len(r.sent), r.sent)
	}
	for _, e := range r.sent {
		want := map[string]int{"b.test": 2, "c.test": 1}[e.server]
		if len(e.messages) != want || e.sender != alice || e.evType != "m.test" {
			t.Errorf("EDU to %s: %+v", e.server, e)
		}
		if _, ok := e.messages[alice]; ok {
			t.Errorf("a local user's message left the server: %+v", e)
		}
		if n := utf8.RuneCountInString(e.messageID); n == 0 || n > 32 || e.messageID != r.sent[0].messageID {
			t.Errorf("message_id %q", e.messageID)
		}
	}
	got, _, _ := s.ToDevice(context.Background(), alice, aliceDevice, 0, 1<<62)
	if len(got) != 1 {
		t.Errorf("alice's own device got %d messages, want 1", len(got))
	}
}

// TestLocalChangesAreAnnounced: new device keys, deleted devices and new
// cross-signing keys are handed to the Remote after they are stored; a
// remote user's change is recorded for /sync like a local one.
func TestLocalChangesAreAnnounced(t *testing.T) {
	s := newService(t)
	r := &lyingRemote{}
	s.SetRemote(r)
	ctx := context.Background()
	body := `{"device_keys":{"user_id":"` + alice + `","device_id":"ADEV","algorithms":["a"],"keys":{"ed25519:ADEV":"k"},
		"signatures":{"` + alice + `":{"ed25519:ADEV":"s"}}}}`
	up, err := DecodeUpload([]byte(body), alice, aliceDevice)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the same keys again are no change
		if _, err := s.Store(ctx, alice, aliceDevice, up); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteDevices(ctx, alice, []string{aliceDevice}); err != nil {
		t.Fatal(err)
	}
	if len(r.changes) != 2 || len(r.changes[0].Devices) != 1 || len(r.changes[1].Deleted) != 1 {
		t.Fatalf("announced %+v, want the new device then its deletion", r.changes)
	}
	if err := s.RemoteDeviceListChanged(ctx, bob); err != nil {
		t.Fatal(err)
	}
	users, _ := s.ChangedUsers(0, 1<<62)
	if len(users) != 2 || users[1] != bob {
		t.Fatalf("changed users %v", users)
	}
}

func newPair(t *testing.T) (string, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawStdEncoding.EncodeToString(pub), priv
}

func signAs(t *testing.T, user, pub string, priv ed25519.PrivateKey, obj string) json.RawMessage {
	t.Helper()
	b, err := gomatrixserverlib.SignJSON(user, gomatrixserverlib.KeyID("ed25519:"+pub), priv, []byte(obj))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSigningRemoteMasterKeys: alice verifies bob of another server by
// signing his master key, as his server serves it, with her user-signing
// key; the signature is kept here and added to bob's key in later
// answers. A signature by another of her keys, or of a key that is not
// bob's master key, is refused and stored nowhere.
func TestSigningRemoteMasterKeys(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	mPub, mPriv := newPair(t)
	sPub, _ := newPair(t)
	uPub, uPriv := newPair(t)
	cross := func(usage, pub string) json.RawMessage {
		obj := fmt.Sprintf(`{"user_id":%q,"usage":[%q],"keys":{"ed25519:%s":%q}}`, alice, usage, pub, pub)
		if usage == "master" {
			return json.RawMessage(obj)
		}
		return signAs(t, alice, mPub, mPriv, obj)
	}
	err := s.UploadCrossSigning(ctx, alice, CrossSigningUpload{Master: cross("master", mPub),
		SelfSigning: cross("self_signing", sPub), UserSigning: cross("user_signing", uPub)}, false)
	if err != nil {
		t.Fatal(err)
	}
	bobPub, _ := newPair(t)
	bobMaster := fmt.Sprintf(`{"user_id":%q,"usage":["master"],"keys":{"ed25519:%s":%q}}`, bob, bobPub, bobPub)
	var served map[string]any
	json.Unmarshal([]byte(bobMaster), &served)
	s.SetRemote(&lyingRemote{queries: map[string]*QueryResult{"b.test": {MasterKeys: map[string]map[string]any{bob: served}}}})

	failures, err := s.UploadSignatures(ctx, alice, map[string]map[string]json.RawMessage{bob: {
		bobPub:    signAs(t, alice, mPub, mPriv, bobMaster), // her master key, not her user-signing key
		"NOTBOBS": signAs(t, alice, uPub, uPriv, bobMaster),
	}})
	if err != nil {
		t.Fatal(err)
	}
	code := func(keyID string) any { f, _ := failures[bob][keyID].(map[string]any); return f["errcode"] }
	if code(bobPub) != "M_INVALID_SIGNATURE" || code("NOTBOBS") != "M_NOT_FOUND" {
		t.Fatalf("failures %v", failures)
	}
	sigsOf := func() map[string]any {
		res, err := s.Query(alice, map[string][]string{bob: {}}, func(string, string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		sigs, _ := res.MasterKeys[bob]["signatures"].(map[string]any)
		mine, _ := sigs[alice].(map[string]any)
		return mine
	}
	if got := sigsOf(); len(got) != 0 {
		t.Fatalf("refused signatures were stored: %v", got)
	}

	failures, err = s.UploadSignatures(ctx, alice, map[string]map[string]json.RawMessage{bob: {bobPub: signAs(t, alice, uPub, uPriv, bobMaster)}})
	if err != nil || len(failures) != 0 {
		t.Fatalf("signing with the user-signing key: %v %v", err, failures)
	}
	if got := sigsOf(); got["ed25519:"+uPub] == nil {
		t.Fatalf("bob's master key lacks alice's signature: %v", got)
	}
	// Whom alice verified is hers to know.
	res, err := s.Query("@mallory:test.local", map[string][]string{bob: {}}, func(string, string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if sigs, _ := res.MasterKeys[bob]["signatures"].(map[string]any); sigs[alice] != nil {
		t.Fatalf("another local user sees alice's signature of bob's key: %v", sigs)
	}
}
