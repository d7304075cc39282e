package federation

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/matrix-org/gomatrix"
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/federation/queue"
	"github.com/hearth-chat/hearth/federation/serverkeys"
	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/e2ee"
	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/store"
)

// ukNet routes fclient's matrix://name/... requests to TLS test servers
// by server name, as the resolver routes them to hosts.
type ukNet struct {
	mu      sync.Mutex
	servers map[string]*httptest.Server
}

func (n *ukNet) RoundTrip(req *http.Request) (*http.Response, error) {
	n.mu.Lock()
	srv := n.servers[req.URL.Host]
	n.mu.Unlock()
	if srv == nil {
		return nil, fmt.Errorf("ukNet: no route to %s", req.URL.Host)
	}
	r := req.Clone(req.Context())
	r.URL.Scheme, r.URL.Host, r.Host = "https", srv.Listener.Addr().String(), req.URL.Host
	return srv.Client().Transport.RoundTrip(r)
}

// ukServer is one homeserver of the test: real store, room engine,
// accounts, key store, server keys and federation service over real TLS.
type ukServer struct {
	name     string
	usk      map[string]ed25519.PrivateKey // user → user-signing private key
	uskPub   map[string]string
	db       *store.DB
	rooms    *room.Engine
	accounts *account.Accounts
	keys     *e2ee.Service
	svc      *Service
}

// newUKServer starts server name on n; withQueue gives it a real outbound
// queue (otherwise EDUs it would send are dropped).
func newUKServer(t *testing.T, n *ukNet, name string, withQueue bool) *ukServer {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	sn, keyID := spec.ServerName(name), gomatrixserverlib.KeyID("ed25519:t")
	st, err := room.Open(room.Options{Path: filepath.Join(t.TempDir(), "hearth.db"),
		Engine: room.Config{ServerName: name, KeyID: string(keyID), PrivateKey: priv}})
	if err != nil {
		t.Fatal(err)
	}
	db, notifier := st.DB, st.Notifier
	sk := serverkeys.New(db, serverkeys.Identity{ServerName: sn, KeyID: keyID, Key: priv}, fclient.NewClient(fclient.WithTransport(n)), nil)
	client := fclient.NewFederationClient([]*fclient.SigningIdentity{{ServerName: sn, KeyID: keyID, PrivateKey: priv}}, fclient.WithTransport(n))
	s := &ukServer{name: name, db: db, accounts: account.New(db, name), keys: e2ee.New(db, name),
		usk: map[string]ed25519.PrivateKey{}, uskPub: map[string]string{}, rooms: st.Engine}
	cfg := Config{ServerName: sn, KeyID: keyID, Key: priv, DB: db, Rooms: s.rooms, Accounts: s.accounts,
		KeyRing: sk.KeyRing(), Client: client, Keys: s.keys}
	var q *queue.Queue
	if withQueue {
		q = queue.New(db, s.rooms, notifier, client, sn)
		cfg.Queue = q
	}
	s.svc = New(cfg)
	s.keys.SetRemote(s.svc)
	sk.Register(s.svc.Mux())
	srv := httptest.NewTLSServer(s.svc.Handler())
	n.mu.Lock()
	n.servers[name] = srv
	n.mu.Unlock()
	if q != nil {
		q.Start()
	}
	t.Cleanup(func() {
		srv.Close()
		if q != nil {
			q.Stop()
		}
		db.Close()
	})
	return s
}

// addUser creates user name with one device (logged in, so to-device
// messages can reach it) that has device keys, one one-time key and, if
// crossSign, cross-signing keys (master, self-signing, user-signing).
func (s *ukServer) addUser(t *testing.T, name, device string, crossSign bool) string {
	t.Helper()
	ctx := context.Background()
	user := "@" + name + ":" + s.name
	if err := s.accounts.Create(ctx, name, "", false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.accounts.Login(ctx, name, device, name+"'s laptop", false); err != nil {
		t.Fatal(err)
	}
	s.uploadDevice(t, user, device)
	if crossSign {
		mpub, mpriv := newEd25519(t)
		cross := func(usage, pub string) json.RawMessage {
			raw := fmt.Sprintf(`{"user_id":%q,"usage":[%q],"keys":{"ed25519:%s":%q}}`, user, usage, pub, pub)
			if usage == "master" {
				return json.RawMessage(raw)
			}
			signed, err := gomatrixserverlib.SignJSON(user, gomatrixserverlib.KeyID("ed25519:"+mpub), mpriv, []byte(raw))
			if err != nil {
				t.Fatal(err)
			}
			return signed
		}
		spub, _ := newEd25519(t)
		upub, upriv := newEd25519(t)
		s.usk[user], s.uskPub[user] = upriv, upub
		up := e2ee.CrossSigningUpload{Master: cross("master", mpub), SelfSigning: cross("self_signing", spub),
			UserSigning: cross("user_signing", upub)}
		if err := s.keys.UploadCrossSigning(ctx, user, up, false); err != nil {
			t.Fatal(err)
		}
	}
	return user
}

// uploadDevice uploads device keys and the one-time key "AAAA".
func (s *ukServer) uploadDevice(t *testing.T, user, device string) {
	t.Helper()
	body := fmt.Sprintf(`{"device_keys":{"user_id":%q,"device_id":%q,
		"algorithms":["m.olm.v1.curve25519-aes-sha2","m.megolm.v1.aes-sha2"],
		"keys":{"curve25519:%s":"curve-%s","ed25519:%s":"ed-%s"},"signatures":{%q:{"ed25519:%s":"sig"}}},
		"one_time_keys":{"signed_curve25519:AAAA":{"key":"otk-%s","signatures":{%q:{"ed25519:%s":"sig"}}}}}`,
		user, device, device, device, device, device, user, device, device, user, device)
	up, err := e2ee.DecodeUpload([]byte(body), user, device)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.keys.Store(context.Background(), user, device, up); err != nil {
		t.Fatal(err)
	}
}

func newEd25519(t *testing.T) (string, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawStdEncoding.EncodeToString(pub), priv
}

// call makes an X-Matrix signed request from s to server and returns the
// status, the errcode of an error and the decoded body of a success.
func (s *ukServer) call(t *testing.T, method, server, path string, body any) (int, string, map[string]any) {
	t.Helper()
	var out map[string]any
	err := s.svc.signedRequest(context.Background(), method, server, path, body, &out)
	var he gomatrix.HTTPError
	switch {
	case err == nil:
		return http.StatusOK, "", out
	case errors.As(err, &he):
		var re gomatrix.RespError
		errors.As(he.WrappedError, &re)
		return he.Code, re.ErrCode, nil
	}
	t.Fatalf("%s %s: %v", method, path, err)
	return 0, "", nil
}

func newUKNet() *ukNet { return &ukNet{servers: map[string]*httptest.Server{}} }

// TestRemoteKeysQueryAndClaim: a client's /keys/query and /keys/claim on
// hs2 for alice@hs1 reach hs1 over signed TLS requests and come back with
// alice's keys exactly as she uploaded them (signatures intact), her
// master and self-signing keys but never her user-signing key; a one-time
// key is handed out once; an unreachable server is listed in failures
// without costing the others.
func TestRemoteKeysQueryAndClaim(t *testing.T) {
	n := newUKNet()
	hs1, hs2 := newUKServer(t, n, "hs1.test", false), newUKServer(t, n, "hs2.test", false)
	alice := hs1.addUser(t, "alice", "ADEV", true)
	bob := hs2.addUser(t, "bob", "BDEV", false)

	res, err := hs2.keys.Query(bob, map[string][]string{alice: {}, "@carol:hs3.test": {}}, func(string, string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	local, err := hs1.keys.Query(alice, map[string][]string{alice: {}}, func(string, string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(res.DeviceKeys[alice]["ADEV"])
	want, _ := json.Marshal(local.DeviceKeys[alice]["ADEV"])
	if res.DeviceKeys[alice]["ADEV"] == nil || string(got) != string(want) {
		t.Fatalf("alice's device keys through hs2:\n got %s\nwant %s", got, want)
	}
	if res.MasterKeys[alice] == nil || res.SelfSigningKeys[alice] == nil {
		t.Fatalf("cross-signing keys missing: master %v self-signing %v", res.MasterKeys[alice], res.SelfSigningKeys[alice])
	}
	if res.UserSigningKeys[alice] != nil {
		t.Fatal("alice's user-signing key left hs1")
	}
	if res.Failures["hs3.test"] == nil || res.Failures["hs1.test"] != nil {
		t.Fatalf("failures = %v, want only hs3.test", res.Failures)
	}

	// carol@hs1 verifies alice: her signature of alice's master key stays
	// on hs1.
	carol := hs1.addUser(t, "carol", "CDEV", true)
	master := local.MasterKeys[alice]
	delete(master, "signatures")
	raw, _ := json.Marshal(master)
	signed, err := gomatrixserverlib.SignJSON(carol, gomatrixserverlib.KeyID("ed25519:"+hs1.uskPub[carol]), hs1.usk[carol], raw)
	if err != nil {
		t.Fatal(err)
	}
	pub := ""
	for _, v := range master["keys"].(map[string]any) {
		pub = v.(string)
	}
	sigFailures, err := hs1.keys.UploadSignatures(context.Background(), carol, map[string]map[string]json.RawMessage{alice: {pub: signed}})
	if err != nil || len(sigFailures) != 0 {
		t.Fatalf("carol signs alice's master key: %v %v", err, sigFailures)
	}
	_, _, out := hs2.call(t, "POST", "hs1.test", "/_matrix/federation/v1/user/keys/query",
		map[string]any{"device_keys": map[string]any{alice: []string{}}})
	mk, _ := out["master_keys"].(map[string]any)
	ak, _ := mk[alice].(map[string]any)
	if sigs, _ := ak["signatures"].(map[string]any); ak == nil || sigs[carol] != nil {
		t.Fatalf("alice's master key as hs1 serves it to hs2: %v", ak)
	}

	// Only the devices asked for come back.
	res, _ = hs2.keys.Query(bob, map[string][]string{alice: {"OTHER"}}, func(string, string) string { return "" })
	if len(res.DeviceKeys[alice]) != 0 {
		t.Fatalf("asked for device OTHER, got %v", res.DeviceKeys[alice])
	}

	claim := map[string]map[string]string{alice: {"ADEV": "signed_curve25519"}}
	otks, failures, err := hs2.keys.Claim(context.Background(), claim)
	if err != nil || len(failures) != 0 {
		t.Fatalf("claim: %v, failures %v", err, failures)
	}
	if k := otks[alice]["ADEV"]["signed_curve25519:AAAA"]; k == nil {
		t.Fatalf("claimed %v", otks)
	}
	otks, _, _ = hs2.keys.Claim(context.Background(), claim)
	if len(otks[alice]["ADEV"]) != 0 {
		t.Fatalf("the one-time key was handed out twice: %v", otks)
	}
}

// TestUserKeysEndpointsRefuseBadInput: the three endpoints answer the
// spec's errors for bodies of the wrong shape, serve only this server's
// users, and /user/devices carries the stream ID and cross-signing keys.
func TestUserKeysEndpointsRefuseBadInput(t *testing.T) {
	n := newUKNet()
	hs1, hs2 := newUKServer(t, n, "hs1.test", false), newUKServer(t, n, "hs2.test", false)
	alice := hs1.addUser(t, "alice", "ADEV", true)
	bob := hs2.addUser(t, "bob", "BDEV", false)

	const query, claim = "/_matrix/federation/v1/user/keys/query", "/_matrix/federation/v1/user/keys/claim"
	for _, c := range []struct {
		path    string
		body    string
		status  int
		errcode string
	}{
		{query, `[]`, 400, "M_BAD_JSON"},
		{query, `{"device_keys":"all"}`, 400, "M_BAD_JSON"},
		{query, `{"device_keys":{"` + alice + `":"ADEV"}}`, 400, "M_BAD_JSON"},
		{query, `{}`, 400, "M_MISSING_PARAM"},
		{claim, `{"one_time_keys":{"` + alice + `":"ADEV"}}`, 400, "M_BAD_JSON"},
		{claim, `{"one_time_keys":[]}`, 400, "M_BAD_JSON"},
		{claim, `{}`, 400, "M_MISSING_PARAM"},
	} {
		status, errcode, _ := hs2.call(t, "POST", "hs1.test", c.path, json.RawMessage(c.body))
		if status != c.status || errcode != c.errcode {
			t.Errorf("POST %s %s: %d %s, want %d %s", c.path, c.body, status, errcode, c.status, c.errcode)
		}
	}
	// Nothing was claimed by the bad requests.
	_, _, out := hs2.call(t, "POST", "hs1.test", claim, map[string]any{"one_time_keys": map[string]any{
		alice: map[string]string{"ADEV": "signed_curve25519"}, bob: map[string]string{"BDEV": "signed_curve25519"}}})
	otks, _ := out["one_time_keys"].(map[string]any)
	if otks[alice] == nil || otks[bob] != nil {
		t.Fatalf("claim on hs1 for alice and bob@hs2: %v", out)
	}

	// hs1 does not answer for hs2's users, even if it has heard of them.
	_, _, out = hs2.call(t, "POST", "hs1.test", query, map[string]any{"device_keys": map[string]any{alice: []string{}, bob: []string{}}})
	dk, _ := out["device_keys"].(map[string]any)
	if dk[alice] == nil || dk[bob] != nil {
		t.Fatalf("query on hs1 for alice and bob@hs2: %v", out)
	}
	if uk, ok := out["user_signing_keys"]; ok {
		t.Fatalf("user-signing keys over federation: %v", uk)
	}

	devices := func(user string) (int, string, map[string]any) {
		return hs2.call(t, "GET", "hs1.test", "/_matrix/federation/v1/user/devices/"+user, nil)
	}
	for _, user := range []string{bob, "@nobody:hs1.test"} {
		if status, errcode, _ := devices(user); status != 404 || errcode != "M_NOT_FOUND" {
			t.Errorf("/user/devices/%s: %d %s, want 404 M_NOT_FOUND", user, status, errcode)
		}
	}
	status, _, out := devices(alice)
	list, _ := out["devices"].([]any)
	if status != 200 || out["user_id"] != alice || len(list) != 1 || out["master_key"] == nil || out["self_signing_key"] == nil {
		t.Fatalf("/user/devices/%s: %d %v", alice, status, out)
	}
	if sid, _ := out["stream_id"].(float64); sid <= 0 {
		t.Errorf("stream_id = %v", out["stream_id"])
	}
	dev, _ := list[0].(map[string]any)
	if dev["device_id"] != "ADEV" || dev["keys"] == nil || dev["device_display_name"] != nil {
		t.Errorf("device entry %v (display names stay home)", dev)
	}
}

// waitFor polls cond until it holds; delivery through the queue is
// asynchronous. The deadline only bounds a failing test.
func ukWaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: did not happen", what)
}

// TestKeyEDUsAcrossServers: with alice@hs1 and bob@hs2 in one room (bob
// joined over federation) and real outbound queues, a to-device message
// from alice reaches bob's device on hs2 as m.direct_to_device, and
// alice's new device reaches hs2 as m.device_list_update, which hs2
// records for /sync. Inbound EDUs speaking for another server's users,
// or for users no local user shares a room with, change nothing.
func TestKeyEDUsAcrossServers(t *testing.T) {
	n := newUKNet()
	hs1, hs2, alice, bob, _ := sharedRoom(t, n, true)
	ctx := context.Background()
	if got := hs1.rooms.ServersSharingRoomsWith(alice); len(got) != 1 || got[0] != "hs2.test" {
		t.Fatalf("servers sharing a room with alice: %v", got)
	}

	devicesOf := func(s *ukServer) func(string) ([]string, error) {
		return func(user string) ([]string, error) {
			devs, err := s.accounts.Devices(s.accounts.Localpart(user))
			ids := []string{}
			for _, d := range devs {
				ids = append(ids, d.ID)
			}
			return ids, err
		}
	}
	toDevice := func(s *ukServer, user, device string) []string {
		msgs, _, err := s.keys.ToDevice(ctx, user, device, 0, 1<<62)
		if err != nil {
			t.Fatal(err)
		}
		out := []string{}
		for _, m := range msgs {
			out = append(out, string(m))
		}
		return out
	}
	err := hs1.keys.SendToDevice(ctx, alice, "ADEV", "txn1", "m.test", map[string]map[string]json.RawMessage{
		bob: {"*": json.RawMessage(`{"hello":"bob"}`)}}, devicesOf(hs1))
	if err != nil {
		t.Fatal(err)
	}
	ukWaitFor(t, "alice's to-device message on bob's device at hs2", func() bool { return len(toDevice(hs2, bob, "BDEV")) > 0 })
	var msg struct {
		Sender, Type string
		Content      map[string]string
	}
	json.Unmarshal([]byte(toDevice(hs2, bob, "BDEV")[0]), &msg)
	if msg.Sender != alice || msg.Type != "m.test" || msg.Content["hello"] != "bob" {
		t.Fatalf("bob got %+v", msg)
	}

	// bob's join announced his devices to hs1 (devicelist_join_test.go):
	// the checks below look at what came after that.
	var since uint64
	changed := func(s *ukServer, user string) bool {
		users, err := s.keys.ChangedUsers(since, 1<<62)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range users {
			if u == user {
				return true
			}
		}
		return false
	}
	if changed(hs2, alice) {
		t.Fatal("hs2 recorded a change of alice's devices before there was one")
	}
	if _, err := hs1.accounts.Login(ctx, "alice", "ADEV2", "", false); err != nil {
		t.Fatal(err)
	}
	hs1.uploadDevice(t, alice, "ADEV2")
	ukWaitFor(t, "alice's new device announced to hs2", func() bool { return changed(hs2, alice) })

	// Inbound EDUs that must change nothing on hs1.
	ukWaitFor(t, "bob's devices announced to hs1 on his join", func() bool { return changed(hs1, bob) })
	hs1.db.View(func(tx *store.Tx) error { since = tx.Pos(); return nil })
	edu := func(origin, typ, content string) {
		hs1.svc.receiveEDU(ctx, spec.ServerName(origin), gomatrixserverlib.EDU{Type: typ, Content: spec.RawJSON(content)})
	}
	before := len(toDevice(hs1, alice, "ADEV"))
	edu("hs2.test", spec.MDirectToDevice, `{"sender":"@eve:hs3.test","type":"m.test","message_id":"x1",
		"messages":{"`+alice+`":{"*":{"forged":true}}}}`)
	if got := len(toDevice(hs1, alice, "ADEV")); got != before {
		t.Fatalf("a to-device message for another server's sender was delivered (%d → %d)", before, got)
	}
	edu("hs2.test", spec.MDirectToDevice, `{"sender":"`+bob+`","type":"m.test","message_id":"x2",
		"messages":{"`+alice+`":{"ADEV":{"hi":"alice"}}}}`)
	if got := len(toDevice(hs1, alice, "ADEV")); got != before+1 {
		t.Fatalf("bob's to-device message from hs2: %d messages, want %d", got, before+1)
	}
	edu("hs3.test", spec.MDeviceListUpdate, `{"user_id":"`+bob+`","device_id":"X","stream_id":1}`)
	edu("hs2.test", spec.MDeviceListUpdate, `{"user_id":"@zed:hs2.test","device_id":"X","stream_id":1}`)
	if changed(hs1, bob) || changed(hs1, "@zed:hs2.test") {
		t.Fatal("a device list update from the wrong server or for a stranger was recorded")
	}
	edu("hs2.test", mSigningKeyUpdate, `{"user_id":"`+bob+`"}`)
	if !changed(hs1, bob) {
		t.Fatal("bob's m.signing_key_update from hs2 was not recorded")
	}
}

// sharedRoom is hs1 and hs2 with alice@hs1's public room, which bob@hs2
// joined over federation.
func sharedRoom(t *testing.T, n *ukNet, withKeys bool) (hs1, hs2 *ukServer, alice, bob, roomID string) {
	t.Helper()
	hs1, hs2 = newUKServer(t, n, "hs1.test", withKeys), newUKServer(t, n, "hs2.test", withKeys)
	alice = hs1.addUser(t, "alice", "ADEV", false)
	bob = hs2.addUser(t, "bob", "BDEV", false)
	ctx := context.Background()
	roomID, err := hs1.rooms.CreateRoom(ctx, alice, room.Profile{}, room.CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	if err := hs2.svc.JoinRoom(ctx, bob, roomID, []string{"hs1.test"}, map[string]any{"membership": "join"}); err != nil {
		t.Fatal(err)
	}
	return hs1, hs2, alice, bob, roomID
}
