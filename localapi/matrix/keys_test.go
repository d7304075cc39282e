package matrix_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/url"
	"slices"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/hearth-chat/hearth/internal/e2ee"
	"github.com/hearth-chat/hearth/internal/store"
)

const kv3 = "/_matrix/client/v3"

// newKeysServer is a test server with the key service connected, and a
// checker that validates every response against the spec.
func newKeysServer(t *testing.T) (*testServer, specChecker) {
	t.Helper()
	ts := newTestServer(t)
	ts.API.SetKeys(e2ee.New(ts.DB, testServerName))
	return ts, specChecker{ts, loadSpec(t)}
}

// deviceKeys is a device_keys object for u's device; the server checks its
// shape and the presence of the self-signature, not the cryptography.
func deviceKeys(u *testUser, tag string) map[string]any {
	return map[string]any{
		"user_id": u.ID, "device_id": u.DeviceID,
		"algorithms": []string{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
		"keys":       map[string]any{"curve25519:" + u.DeviceID: "curve" + tag, "ed25519:" + u.DeviceID: "ed" + tag},
		"signatures": map[string]any{u.ID: map[string]any{"ed25519:" + u.DeviceID: "sig" + tag}},
	}
}

func otk(key string) map[string]any {
	return map[string]any{"key": key, "signatures": map[string]any{"@x:test.local": map[string]any{"ed25519:X": "s"}}}
}

func otkCount(t *testing.T, r *response) float64 {
	t.Helper()
	counts, _ := r.json(t)["one_time_key_counts"].(map[string]any)
	n, _ := counts["signed_curve25519"].(float64)
	return n
}

func TestKeysUploadQueryClaim(t *testing.T) {
	ts, c := newKeysServer(t)
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")

	r := c.call(t, "POST", kv3+"/keys/upload", alice.Token, map[string]any{
		"device_keys":   deviceKeys(alice, "A"),
		"one_time_keys": map[string]any{"signed_curve25519:AAAA": otk("k1"), "signed_curve25519:AAAB": otk("k2")},
		"fallback_keys": map[string]any{"signed_curve25519:FB": map[string]any{"key": "fb", "fallback": true,
			"signatures": map[string]any{alice.ID: map[string]any{"ed25519:" + alice.DeviceID: "s"}}}},
	})
	r.wantStatus(t, 200)
	if n := otkCount(t, r); n != 2 {
		t.Fatalf("one_time_key_counts = %v, want 2", n)
	}
	// The same device keys again are fine; different ones, or keys
	// claiming another user or device, or unsigned, are refused and change
	// nothing.
	c.call(t, "POST", kv3+"/keys/upload", alice.Token, map[string]any{"device_keys": deviceKeys(alice, "A")}).wantStatus(t, 200)
	other := deviceKeys(bob, "B")
	other["device_id"] = alice.DeviceID
	unsigned := deviceKeys(alice, "A")
	delete(unsigned, "signatures")
	wrongDevice := deviceKeys(alice, "A")
	wrongDevice["device_id"] = "OTHER"
	bad := []map[string]any{
		{"device_keys": deviceKeys(alice, "CHANGED"), "one_time_keys": map[string]any{"signed_curve25519:NEW": otk("n")}},
		{"device_keys": other},
		{"device_keys": wrongDevice},
		{"device_keys": unsigned},
		{"one_time_keys": map[string]any{"no-colon": otk("x")}},
		{"one_time_keys": map[string]any{"signed_curve25519:AAAA": otk("different")}},
		{"one_time_keys": map[string]any{"signed_curve25519:E": map[string]any{"nokey": true}}},
		{"one_time_keys": map[string]any{"signed_curve25519:OK": otk("ok"), "signed_curve25519:E": 5}},
	}
	for i, body := range bad {
		r := c.call(t, "POST", kv3+"/keys/upload", alice.Token, body)
		if r.Status != 400 {
			t.Errorf("bad upload %d: status %d, want 400: %s", i, r.Status, r.Body)
		}
	}
	c.call(t, "POST", kv3+"/keys/upload", alice.Token, `{"device_keys": [1]}`).wantError(t, 400, "M_BAD_JSON")
	if n := otkCount(t, c.call(t, "POST", kv3+"/keys/upload", alice.Token, map[string]any{})); n != 2 {
		t.Fatalf("refused uploads changed the one-time keys: count %v", n)
	}

	// Query: bob sees alice's device keys as first uploaded, with her
	// device's display name.
	r = c.call(t, "POST", kv3+"/keys/query", bob.Token, map[string]any{"device_keys": map[string]any{alice.ID: []string{}, "@x:elsewhere": []string{}}})
	r.wantStatus(t, 200)
	body := r.json(t)
	dev, _ := body["device_keys"].(map[string]any)[alice.ID].(map[string]any)[alice.DeviceID].(map[string]any)
	if dev == nil || dev["keys"].(map[string]any)["curve25519:"+alice.DeviceID] != "curveA" {
		t.Fatalf("query: alice's device keys missing or changed: %s", r.Body)
	}
	if _, ok := body["failures"].(map[string]any)["elsewhere"]; !ok {
		t.Errorf("query: no failure for the remote server: %s", r.Body)
	}

	// Claim: two one-time keys, then the fallback key (marked used).
	claim := func() string {
		r := c.call(t, "POST", kv3+"/keys/claim", bob.Token, map[string]any{
			"one_time_keys": map[string]any{alice.ID: map[string]any{alice.DeviceID: "signed_curve25519"}}})
		r.wantStatus(t, 200)
		got, _ := r.json(t)["one_time_keys"].(map[string]any)[alice.ID].(map[string]any)[alice.DeviceID].(map[string]any)
		for k := range got {
			return k
		}
		t.Fatalf("claim returned no key: %s", r.Body)
		return ""
	}
	sync := covSync(t, ts, alice, "")
	if fb := sync["device_unused_fallback_key_types"].([]any); len(fb) != 1 {
		t.Fatalf("unused fallback types before claims = %v", fb)
	}
	got := []string{claim(), claim(), claim(), claim()}
	if got[0] == got[1] || !slices.Contains(got[:2], "signed_curve25519:AAAA") || got[2] != "signed_curve25519:FB" || got[3] != "signed_curve25519:FB" {
		t.Fatalf("claims = %v, want both one-time keys then the fallback key", got)
	}
	sync = covSync(t, ts, alice, "")
	if fb := sync["device_unused_fallback_key_types"].([]any); len(fb) != 0 {
		t.Errorf("fallback key still unused after being claimed: %v", fb)
	}
	if n := sync["device_one_time_keys_count"].(map[string]any)["signed_curve25519"]; n != float64(0) {
		t.Errorf("device_one_time_keys_count = %v, want 0", n)
	}
	c.call(t, "POST", kv3+"/keys/claim", bob.Token, map[string]any{}).wantError(t, 400, "M_MISSING_PARAM")
}

func TestToDevice(t *testing.T) {
	ts, c := newKeysServer(t)
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	second := login(t, ts, "alice", alice.Password, nil)
	secondDevice := second.str(t, "device_id")
	aliceSince := covSync(t, ts, alice, "")["next_batch"].(string)

	send := func(txn string, device string, n int) {
		c.call(t, "PUT", kv3+"/sendToDevice/m.test/"+txn, bob.Token, map[string]any{
			"messages": map[string]any{alice.ID: map[string]any{device: map[string]any{"n": n}}}}).wantStatus(t, 200)
	}
	send("t1", alice.DeviceID, 1)
	send("t1", alice.DeviceID, 1) // a retry: queued once
	send("t2", "*", 2)

	countN := func(resp map[string]any) []float64 {
		var out []float64
		for _, ev := range resp["to_device"].(map[string]any)["events"].([]any) {
			e := ev.(map[string]any)
			if e["sender"] != bob.ID || e["type"] != "m.test" {
				t.Fatalf("to-device event %v", e)
			}
			out = append(out, e["content"].(map[string]any)["n"].(float64))
		}
		return out
	}
	first := covSync(t, ts, alice, aliceSince)
	if got := countN(first); !slices.Equal(got, []float64{1, 2}) {
		t.Fatalf("first device got %v, want [1 2]", got)
	}
	// Not acknowledged: the same since token gets them again.
	if got := countN(covSync(t, ts, alice, aliceSince)); !slices.Equal(got, []float64{1, 2}) {
		t.Fatalf("repeat of the same since got %v, want [1 2]", got)
	}
	// Acknowledged by syncing past them: gone.
	if got := countN(covSync(t, ts, alice, first["next_batch"].(string))); len(got) != 0 {
		t.Fatalf("after acknowledging, got %v again", got)
	}
	secondUser := &testUser{ID: alice.ID, Token: second.str(t, "access_token"), DeviceID: secondDevice}
	if got := countN(covSync(t, ts, secondUser, "")); !slices.Equal(got, []float64{2}) {
		t.Fatalf("second device got %v, want [2] (the wildcard message only)", got)
	}
	// Deleting the device drops its queue.
	send("t3", secondDevice, 3)
	ts.do(t, "POST", kv3+"/logout", secondUser.Token, map[string]any{}).wantStatus(t, 200)
	queued := 0
	ts.DB.View(func(tx *store.Tx) error {
		prefix := string(store.Key(alice.ID, secondDevice, ""))
		c := tx.Cursor(store.ToDevice)
		for k, _ := c.Seek([]byte(prefix)); k != nil && len(k) > len(prefix) && string(k[:len(prefix)]) == prefix; k, _ = c.Next() {
			queued++
		}
		return nil
	})
	if queued != 0 {
		t.Fatalf("%d to-device messages left for a deleted device", queued)
	}
	c.call(t, "PUT", kv3+"/sendToDevice/m.test/t4", bob.Token, map[string]any{}).wantError(t, 400, "M_MISSING_PARAM")
}

// TestDeviceListsOnlyForMembershipChanges: device_lists.changed holds a
// user who newly shares a room, not one whose member event is in the
// response for another reason: lazy loading's member event of a message's
// sender (Element lazy-loads, and re-queried the sender's keys after each
// message), or a profile change, which keeps the membership.
func TestDeviceListsOnlyForMembershipChanges(t *testing.T) {
	ts, _ := newKeysServer(t)
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	roomID := ts.createRoom(t, alice, map[string]any{"preset": "public_chat"})
	covJoin(t, ts, bob, roomID)
	lazy := url.QueryEscape(`{"room":{"state":{"lazy_load_members":true}}}`)
	sync := func(since string) map[string]any {
		r := ts.do(t, "GET", kv3+"/sync?timeout=0&filter="+lazy+"&since="+url.QueryEscape(since), bob.Token, nil)
		r.wantStatus(t, 200)
		return r.json(t)
	}
	since := covSync(t, ts, bob, "")["next_batch"].(string)

	ts.send(t, alice, roomID, "m1", "hello")
	resp := sync(since)
	state := resp["rooms"].(map[string]any)["join"].(map[string]any)[roomID].(map[string]any)["state"].(map[string]any)["events"].([]any)
	if len(state) != 1 {
		t.Fatalf("lazy loading gave %d state events, want alice's member event", len(state))
	}
	if ch := resp["device_lists"].(map[string]any)["changed"].([]any); len(ch) != 0 {
		t.Errorf("after a message: device_lists.changed = %v, want none", ch)
	}

	since = resp["next_batch"].(string)
	ts.do(t, "PUT", kv3+"/rooms/"+url.PathEscape(roomID)+"/state/m.room.member/"+url.PathEscape(alice.ID), alice.Token,
		map[string]any{"membership": "join", "displayname": "Alice"}).wantStatus(t, 200)
	resp = sync(since)
	if ch := resp["device_lists"].(map[string]any)["changed"].([]any); len(ch) != 0 {
		t.Errorf("after a profile change: device_lists.changed = %v, want none", ch)
	}

	// bob leaves after another profile change of alice's: she shares no
	// room with him any more, whatever her last member event changed.
	since = resp["next_batch"].(string)
	ts.do(t, "PUT", kv3+"/rooms/"+url.PathEscape(roomID)+"/state/m.room.member/"+url.PathEscape(alice.ID), alice.Token,
		map[string]any{"membership": "join", "displayname": "Alice B."}).wantStatus(t, 200)
	ts.do(t, "POST", kv3+"/rooms/"+url.PathEscape(roomID)+"/leave", bob.Token, map[string]any{}).wantStatus(t, 200)
	if left := sync(since)["device_lists"].(map[string]any)["left"].([]any); !slices.Equal(left, []any{alice.ID}) {
		t.Errorf("after leaving: device_lists.left = %v, want alice", left)
	}
}

func TestDeviceListsInSync(t *testing.T) {
	ts, c := newKeysServer(t)
	alice, bob, carol := ts.register(t, "alice"), ts.register(t, "bob"), ts.register(t, "carol")
	roomID := ts.createRoom(t, alice, map[string]any{"preset": "public_chat"})
	covJoin(t, ts, bob, roomID)
	since := covSync(t, ts, alice, "")["next_batch"].(string)

	c.call(t, "POST", kv3+"/keys/upload", bob.Token, map[string]any{"device_keys": deviceKeys(bob, "B")}).wantStatus(t, 200)
	c.call(t, "POST", kv3+"/keys/upload", carol.Token, map[string]any{"device_keys": deviceKeys(carol, "C")}).wantStatus(t, 200)
	resp := covSync(t, ts, alice, since)
	changed := resp["device_lists"].(map[string]any)["changed"].([]any)
	if !slices.Contains(changed, any(bob.ID)) || slices.Contains(changed, any(carol.ID)) {
		t.Fatalf("device_lists.changed = %v, want bob (shares a room) and not carol", changed)
	}
	r := c.call(t, "GET", kv3+"/keys/changes?from="+url.QueryEscape(since)+"&to="+url.QueryEscape(resp["next_batch"].(string)), alice.Token, nil)
	r.wantStatus(t, 200)
	if ch := r.json(t)["changed"].([]any); !slices.Equal(ch, []any{bob.ID}) {
		t.Fatalf("/keys/changes changed = %v, want [bob]", ch)
	}

	// carol joins: she is new to alice; bob leaves: he is gone.
	since = resp["next_batch"].(string)
	covJoin(t, ts, carol, roomID)
	ts.do(t, "POST", kv3+"/rooms/"+url.PathEscape(roomID)+"/leave", bob.Token, map[string]any{}).wantStatus(t, 200)
	resp = covSync(t, ts, alice, since)
	lists := resp["device_lists"].(map[string]any)
	if !slices.Contains(lists["changed"].([]any), any(carol.ID)) || !slices.Contains(lists["left"].([]any), any(bob.ID)) {
		t.Fatalf("device_lists = %v, want carol changed and bob left", lists)
	}
	r = c.call(t, "GET", kv3+"/keys/changes?from="+url.QueryEscape(since)+"&to="+url.QueryEscape(resp["next_batch"].(string)), alice.Token, nil)
	if ch := r.json(t); !slices.Equal(ch["changed"].([]any), []any{carol.ID}) || !slices.Equal(ch["left"].([]any), []any{bob.ID}) {
		t.Fatalf("/keys/changes = %s, want carol changed and bob left", r.Body)
	}

	// carol deletes her device: her keys are gone and alice is told.
	since = resp["next_batch"].(string)
	auth := map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": carol.ID}, "password": carol.Password}
	ts.do(t, "DELETE", kv3+"/devices/"+carol.DeviceID, carol.Token, map[string]any{"auth": auth}).wantStatus(t, 200)
	if ch := covSync(t, ts, alice, since)["device_lists"].(map[string]any)["changed"].([]any); !slices.Contains(ch, any(carol.ID)) {
		t.Fatalf("device deletion not in device_lists.changed: %v", ch)
	}
	r = c.call(t, "POST", kv3+"/keys/query", alice.Token, map[string]any{"device_keys": map[string]any{carol.ID: []string{}}})
	if devs := r.json(t)["device_keys"].(map[string]any)[carol.ID].(map[string]any); len(devs) != 0 {
		t.Fatalf("deleted device's keys still served: %v", devs)
	}
}

func TestDeviceListLongPollWakes(t *testing.T) {
	ts, _ := newKeysServer(t)
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	since := covSync(t, ts, alice, "")["next_batch"].(string)
	req := ts.newRequest(t, "GET", kv3+"/sync?timeout=20000&since="+url.QueryEscape(since), alice.Token, nil)
	done := make(chan []byte, 1)
	go func() {
		// A bug makes this wait its full timeout and fail below.
		res, err := ts.http.Client().Do(req)
		if err != nil {
			done <- nil
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		done <- b
	}()
	ts.do(t, "PUT", kv3+"/sendToDevice/m.ping/1", bob.Token, map[string]any{
		"messages": map[string]any{alice.ID: map[string]any{alice.DeviceID: map[string]any{}}}}).wantStatus(t, 200)
	var resp map[string]any
	if err := json.Unmarshal(<-done, &resp); err != nil {
		t.Fatalf("long poll: %v", err)
	}
	if evs := resp["to_device"].(map[string]any)["events"].([]any); len(evs) != 1 {
		t.Fatalf("long poll returned %d to-device events, want 1: %v", len(evs), resp["to_device"])
	}
}

// edKey is an ed25519 key pair for signing test objects for real: the
// server verifies cross-signing signatures.
type edKey struct {
	pub  string
	priv ed25519.PrivateKey
}

func newEdKey(t *testing.T) edKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return edKey{base64.RawStdEncoding.EncodeToString(pub), priv}
}

// sign adds k's signature (as userID) to obj, over its canonical JSON
// without signatures and unsigned (Appendix §"Signing JSON").
func (k edKey) sign(t *testing.T, obj map[string]any, userID string) {
	t.Helper()
	bare := map[string]any{}
	for f, v := range obj {
		if f != "signatures" && f != "unsigned" {
			bare[f] = v
		}
	}
	b, _ := json.Marshal(bare)
	canonical, err := gomatrixserverlib.CanonicalJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	sigs, _ := obj["signatures"].(map[string]any)
	if sigs == nil {
		sigs = map[string]any{}
		obj["signatures"] = sigs
	}
	mine, _ := sigs[userID].(map[string]any)
	if mine == nil {
		mine = map[string]any{}
		sigs[userID] = mine
	}
	mine["ed25519:"+k.pub] = base64.RawStdEncoding.EncodeToString(ed25519.Sign(k.priv, canonical))
}

// crossKey is a cross-signing key object for k; self-signing and
// user-signing keys are signed by the master key.
func crossKey(t *testing.T, u *testUser, usage string, k edKey, master *edKey) map[string]any {
	obj := map[string]any{"user_id": u.ID, "usage": []string{usage}, "keys": map[string]any{"ed25519:" + k.pub: k.pub}}
	if master != nil {
		master.sign(t, obj, u.ID)
	}
	return obj
}

func TestCrossSigning(t *testing.T) {
	ts, c := newKeysServer(t)
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	c.call(t, "POST", kv3+"/keys/upload", alice.Token, map[string]any{"device_keys": deviceKeys(alice, "A")}).wantStatus(t, 200)
	msk, ssk, usk, msk2 := newEdKey(t), newEdKey(t), newEdKey(t), newEdKey(t)
	keysA := map[string]any{"master_key": crossKey(t, alice, "master", msk, nil),
		"self_signing_key": crossKey(t, alice, "self_signing", ssk, &msk), "user_signing_key": crossKey(t, alice, "user_signing", usk, &msk)}

	// Refused without changing anything: a self-signing key not signed by
	// the master key, and one naming another user.
	unsigned := map[string]any{"master_key": crossKey(t, alice, "master", msk, nil), "self_signing_key": crossKey(t, alice, "self_signing", ssk, nil)}
	c.call(t, "POST", kv3+"/keys/device_signing/upload", alice.Token, unsigned).wantError(t, 400, "M_INVALID_SIGNATURE")
	forged := map[string]any{"master_key": crossKey(t, alice, "master", msk, nil), "self_signing_key": crossKey(t, alice, "self_signing", ssk, &msk2)}
	forged["self_signing_key"].(map[string]any)["signatures"] = map[string]any{alice.ID: map[string]any{"ed25519:" + msk.pub: "AAAA"}}
	c.call(t, "POST", kv3+"/keys/device_signing/upload", alice.Token, forged).wantError(t, 400, "M_INVALID_SIGNATURE")
	c.call(t, "POST", kv3+"/keys/device_signing/upload", alice.Token, map[string]any{"self_signing_key": crossKey(t, alice, "self_signing", ssk, &msk)}).wantError(t, 400, "M_MISSING_PARAM")
	c.call(t, "POST", kv3+"/keys/device_signing/upload", alice.Token, map[string]any{"master_key": crossKey(t, bob, "master", msk, nil)}).wantError(t, 400, "M_INVALID_PARAM")
	// The first upload needs no UIA, nor does the same upload again.
	c.call(t, "POST", kv3+"/keys/device_signing/upload", alice.Token, keysA).wantStatus(t, 200)
	c.call(t, "POST", kv3+"/keys/device_signing/upload", alice.Token, keysA).wantStatus(t, 200)
	// Replacing the master key does.
	replace := map[string]any{"master_key": crossKey(t, alice, "master", msk2, nil)}
	r := c.call(t, "POST", kv3+"/keys/device_signing/upload", alice.Token, replace)
	r.wantStatus(t, 401)
	session := r.str(t, "session")
	replace["auth"] = map[string]any{"type": "m.login.password", "session": session, "password": "wrong",
		"identifier": map[string]any{"type": "m.id.user", "user": alice.ID}}
	c.call(t, "POST", kv3+"/keys/device_signing/upload", alice.Token, replace).wantStatus(t, 401)
	query := func(u *testUser) map[string]any {
		r := c.call(t, "POST", kv3+"/keys/query", u.Token, map[string]any{"device_keys": map[string]any{alice.ID: []string{}}})
		r.wantStatus(t, 200)
		return r.json(t)
	}
	if pub := query(alice)["master_keys"].(map[string]any)[alice.ID].(map[string]any)["keys"].(map[string]any)["ed25519:"+msk.pub]; pub != msk.pub {
		t.Fatalf("master key changed without UIA: %v", pub)
	}
	// Bob sees alice's master and self-signing keys but not her user-signing key.
	if q := query(bob); q["self_signing_keys"].(map[string]any)[alice.ID] == nil || q["user_signing_keys"].(map[string]any)[alice.ID] != nil {
		t.Fatalf("bob's view of alice's cross-signing keys: %v", q)
	}
	if query(alice)["user_signing_keys"].(map[string]any)[alice.ID] == nil {
		t.Fatal("alice does not see her own user-signing key")
	}

	// Alice signs her device with her self-signing key; the signature is
	// served with the device keys.
	signed := deviceKeys(alice, "A")
	ssk.sign(t, signed, alice.ID)
	deviceSig := signed["signatures"].(map[string]any)[alice.ID].(map[string]any)["ed25519:"+ssk.pub]
	r = c.call(t, "POST", kv3+"/keys/signatures/upload", alice.Token, map[string]any{alice.ID: map[string]any{alice.DeviceID: signed}})
	r.wantStatus(t, 200)
	if f := r.json(t)["failures"].(map[string]any); len(f) != 0 {
		t.Fatalf("signature upload failures: %v", f)
	}
	dev := query(bob)["device_keys"].(map[string]any)[alice.ID].(map[string]any)[alice.DeviceID].(map[string]any)
	if dev["signatures"].(map[string]any)[alice.ID].(map[string]any)["ed25519:"+ssk.pub] != deviceSig {
		t.Fatalf("device signature not served: %v", dev["signatures"])
	}
	// A signed object that differs from the stored key is a failure, and
	// bob cannot sign alice's device.
	tampered := deviceKeys(alice, "TAMPERED")
	r = c.call(t, "POST", kv3+"/keys/signatures/upload", alice.Token, map[string]any{alice.ID: map[string]any{alice.DeviceID: tampered}})
	if f := r.json(t)["failures"].(map[string]any); f[alice.ID] == nil {
		t.Fatalf("tampered object accepted: %s", r.Body)
	}
	badSig := deviceKeys(alice, "A")
	badSig["signatures"].(map[string]any)[alice.ID].(map[string]any)["ed25519:"+ssk.pub] = base64.RawStdEncoding.EncodeToString(make([]byte, 64))
	r = c.call(t, "POST", kv3+"/keys/signatures/upload", alice.Token, map[string]any{alice.ID: map[string]any{alice.DeviceID: badSig}})
	byUser, _ := r.json(t)["failures"].(map[string]any)[alice.ID].(map[string]any)
	if f, _ := byUser[alice.DeviceID].(map[string]any); f["errcode"] != "M_INVALID_SIGNATURE" {
		t.Fatalf("a signature that does not verify was accepted: %s", r.Body)
	}
	r = c.call(t, "POST", kv3+"/keys/signatures/upload", bob.Token, map[string]any{alice.ID: map[string]any{alice.DeviceID: signed}})
	if f := r.json(t)["failures"].(map[string]any); f[alice.ID] == nil {
		t.Fatalf("bob signed alice's device: %s", r.Body)
	}

	// With the password, the master key is replaced.
	replace["auth"] = map[string]any{"type": "m.login.password", "session": session, "password": alice.Password,
		"identifier": map[string]any{"type": "m.id.user", "user": alice.ID}}
	c.call(t, "POST", kv3+"/keys/device_signing/upload", alice.Token, replace).wantStatus(t, 200)
	if pub := query(alice)["master_keys"].(map[string]any)[alice.ID].(map[string]any)["keys"].(map[string]any)["ed25519:"+msk2.pub]; pub != msk2.pub {
		t.Fatalf("master key not replaced after UIA: %v", pub)
	}
}

func TestKeyBackupAPI(t *testing.T) {
	ts, c := newKeysServer(t)
	alice := ts.register(t, "alice")
	const alg = "m.megolm_backup.v1.curve25519-aes-sha2"
	c.call(t, "GET", kv3+"/room_keys/version", alice.Token, nil).wantError(t, 404, "M_NOT_FOUND")
	v := c.call(t, "POST", kv3+"/room_keys/version", alice.Token, map[string]any{"algorithm": alg, "auth_data": map[string]any{"public_key": "pk"}}).str(t, "version")
	c.call(t, "PUT", kv3+"/room_keys/version/"+v, alice.Token, map[string]any{"algorithm": alg, "auth_data": map[string]any{"public_key": "pk2"}}).wantStatus(t, 200)
	c.call(t, "PUT", kv3+"/room_keys/version/"+v, alice.Token, map[string]any{"algorithm": alg, "version": "999", "auth_data": map[string]any{}}).wantError(t, 400, "M_INVALID_PARAM")
	c.call(t, "PUT", kv3+"/room_keys/version/999", alice.Token, map[string]any{"algorithm": alg, "auth_data": map[string]any{}}).wantError(t, 404, "M_NOT_FOUND")

	key := func(idx int) map[string]any {
		return map[string]any{"first_message_index": idx, "forwarded_count": 0, "is_verified": false, "session_data": map[string]any{"ciphertext": "c"}}
	}
	room := url.PathEscape("!r:test.local")
	q := "?version=" + v
	// One key at each level.
	c.call(t, "PUT", kv3+"/room_keys/keys/"+room+"/S1"+q, alice.Token, key(3)).wantStatus(t, 200)
	c.call(t, "PUT", kv3+"/room_keys/keys/"+room+q, alice.Token, map[string]any{"sessions": map[string]any{"S2": key(0)}}).wantStatus(t, 200)
	r := c.call(t, "PUT", kv3+"/room_keys/keys"+q, alice.Token, map[string]any{"rooms": map[string]any{"!other:test.local": map[string]any{"sessions": map[string]any{"S3": key(0)}}}})
	r.wantStatus(t, 200)
	etag := r.json(t)["etag"]
	if r.json(t)["count"] != float64(3) {
		t.Fatalf("count after three keys: %s", r.Body)
	}
	// A worse key changes nothing, not even the etag.
	r = c.call(t, "PUT", kv3+"/room_keys/keys/"+room+"/S1"+q, alice.Token, key(7))
	if r.json(t)["etag"] != etag {
		t.Fatalf("etag moved on a key that was not better: %s", r.Body)
	}
	if got := c.call(t, "GET", kv3+"/room_keys/keys/"+room+"/S1"+q, alice.Token, nil).json(t)["first_message_index"]; got != float64(3) {
		t.Fatalf("a worse key replaced a better one: first_message_index %v", got)
	}
	info := c.call(t, "GET", kv3+"/room_keys/version", alice.Token, nil).json(t)
	if info["count"] != float64(3) || info["etag"] != etag || info["auth_data"].(map[string]any)["public_key"] != "pk2" {
		t.Fatalf("backup info %v", info)
	}
	if rooms := c.call(t, "GET", kv3+"/room_keys/keys"+q, alice.Token, nil).json(t)["rooms"].(map[string]any); len(rooms) != 2 {
		t.Fatalf("all keys: %v", rooms)
	}
	if s := c.call(t, "GET", kv3+"/room_keys/keys/"+url.PathEscape("!none:test.local")+q, alice.Token, nil).json(t)["sessions"].(map[string]any); len(s) != 0 {
		t.Fatalf("room without keys: %v", s)
	}
	c.call(t, "GET", kv3+"/room_keys/keys/"+room+"/nope"+q, alice.Token, nil).wantError(t, 404, "M_NOT_FOUND")
	c.call(t, "GET", kv3+"/room_keys/keys", alice.Token, nil).wantError(t, 400, "M_MISSING_PARAM")
	if n := c.call(t, "DELETE", kv3+"/room_keys/keys/"+room+q, alice.Token, nil).json(t)["count"]; n != float64(1) {
		t.Fatalf("count after deleting a room's two keys: %v", n)
	}
	// A new version: the old one refuses writes.
	v2 := c.call(t, "POST", kv3+"/room_keys/version", alice.Token, map[string]any{"algorithm": alg, "auth_data": map[string]any{}}).str(t, "version")
	m := c.call(t, "PUT", kv3+"/room_keys/keys/"+room+"/S9"+q, alice.Token, key(0)).wantError(t, 403, "M_WRONG_ROOM_KEYS_VERSION")
	if m["current_version"] != v2 {
		t.Fatalf("current_version %v, want %s", m["current_version"], v2)
	}
	c.call(t, "DELETE", kv3+"/room_keys/version/"+v2, alice.Token, nil).wantStatus(t, 200)
	if got := c.call(t, "GET", kv3+"/room_keys/version", alice.Token, nil).str(t, "version"); got != v {
		t.Fatalf("after deleting %s the current version is %s, want %s", v2, got, v)
	}
	c.call(t, "GET", kv3+"/room_keys/version/"+v2, alice.Token, nil).wantError(t, 404, "M_NOT_FOUND")
}
