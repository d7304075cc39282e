package matrix_test

import (
	"context"
	"encoding/json"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/hearth-chat/hearth/internal/e2ee"
	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/localapi/matrix"
)

// oneAppservice is the package boundary the daemon implements over the
// appservice package (matrix.Appservices): one appservice "br" with the
// as_token "as-secret", sender @brbot and users ^@br_ exclusively. The
// real path runs in internal/e2e/appservice_test.go with mautrix-go.
type oneAppservice struct {
	mu       sync.Mutex
	presence []string
	queried  []string
	toDevice []string
	// makeGhost is what the bridge does when asked about a user: make it.
	makeGhost func(localpart string)
}

type brService struct{}

var brUsers = regexp.MustCompile(`^@br_.+:test\.local$`)

func (brService) ID() string              { return "br" }
func (brService) SenderLocalpart() string { return "brbot" }
func (brService) RateLimited() bool       { return false }
func (brService) ManagesDevices() bool    { return true }
func (brService) OwnsUser(userID string) bool {
	return userID == "@brbot:"+testServerName || brUsers.MatchString(userID)
}

func (a *oneAppservice) ByToken(token string) matrix.Appservice {
	if token == "as-secret" {
		return brService{}
	}
	return nil
}

func (a *oneAppservice) ExclusiveUserOwner(userID string) string {
	if (brService{}).OwnsUser(userID) {
		return "br"
	}
	return ""
}

func (a *oneAppservice) Ping(ctx context.Context, id, txnID string) error {
	return &matrixerr.Error{Status: 400, Code: "M_URL_NOT_SET", Message: "no url"}
}

func (a *oneAppservice) QueryUser(ctx context.Context, userID string) bool {
	a.mu.Lock()
	a.queried = append(a.queried, userID)
	a.mu.Unlock()
	if !brUsers.MatchString(userID) {
		return false
	}
	a.makeGhost(strings.TrimPrefix(strings.TrimSuffix(userID, ":"+testServerName), "@"))
	return true
}

func (a *oneAppservice) ExclusiveAliasOwner(alias string) string {
	if strings.HasPrefix(alias, "#br_") {
		return "br"
	}
	return ""
}

func (a *oneAppservice) QueryAlias(ctx context.Context, alias string) bool {
	a.mu.Lock()
	a.queried = append(a.queried, alias)
	a.mu.Unlock()
	return false
}

func (a *oneAppservice) ThirdPartyProtocols(ctx context.Context) map[string]json.RawMessage {
	return map[string]json.RawMessage{"tele": json.RawMessage(`{"user_fields":["phone"]}`)}
}

func (a *oneAppservice) ThirdPartyProtocol(ctx context.Context, p string) (json.RawMessage, bool) {
	return a.ThirdPartyProtocols(ctx)[p], p == "tele"
}

func (a *oneAppservice) ThirdPartyLookup(ctx context.Context, kind, p string, q url.Values) ([]json.RawMessage, bool) {
	if p != "" && p != "tele" {
		return nil, false
	}
	return []json.RawMessage{json.RawMessage(`{"userid":"@br_` + q.Get("phone") + `:test.local","protocol":"tele","fields":{}}`)}, true
}

func (a *oneAppservice) ToDevice(ctx context.Context, sender, evType string, messages map[string]map[string]json.RawMessage,
	devices func(userID string) ([]string, error)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for userID := range messages {
		a.toDevice = append(a.toDevice, evType+" "+userID)
	}
}

func (a *oneAppservice) Presence(ctx context.Context, userID string, content map[string]any) {
	a.mu.Lock()
	a.presence = append(a.presence, userID+" "+content["presence"].(string))
	a.mu.Unlock()
}

// TestAppserviceToken: the as_token registers namespaced users with
// m.login.application_service whatever the registration mode, acts as
// them with ?user_id=, may set origin_server_ts with ts; ordinary users
// can take neither its names nor its ts; forged tokens and users outside
// the namespace are refused (Application Service API §"Client-Server API
// extensions").
func TestAppserviceToken(t *testing.T) {
	ts := newTestServer(t)
	as := &oneAppservice{}
	ts.API.SetAppservices(as)
	ts.API.SetKeys(e2ee.New(ts.DB, testServerName))
	as.makeGhost = func(lp string) { ts.Accounts.EnsureService(context.Background(), lp, "Ghost "+lp) }
	alice := ts.register(t, "alice")
	ts.Accounts.EnsureService(context.Background(), "brbot", "")

	reg := func(token, username string) *response {
		return ts.do(t, "POST", "/_matrix/client/v3/register", token,
			map[string]any{"type": "m.login.application_service", "username": username, "inhibit_login": true})
	}
	reg("as-secret", "br_anna").wantStatus(t, 200)
	reg("as-secret", "br_anna").wantError(t, 400, "M_USER_IN_USE")
	reg("as-secret", "carol").wantError(t, 400, "M_EXCLUSIVE")
	reg("forged", "br_bob").wantError(t, 401, "M_UNKNOWN_TOKEN")
	if u, _ := ts.Accounts.Get("br_bob"); u != nil {
		t.Fatal("a forged token registered a user")
	}
	// An ordinary user cannot take a namespaced name.
	ts.do(t, "POST", "/_matrix/client/v3/register", "", map[string]any{"username": "br_eve", "password": "correct horse battery",
		"auth": map[string]any{"type": "m.login.dummy"}}).wantError(t, 400, "M_EXCLUSIVE")
	ts.do(t, "GET", "/_matrix/client/v3/register/available?username=br_eve", "", nil).wantError(t, 400, "M_EXCLUSIVE")

	// Identity assertion.
	who := func(userID string) *response {
		q := ""
		if userID != "" {
			q = "?user_id=" + url.QueryEscape(userID)
		}
		return ts.do(t, "GET", "/_matrix/client/v3/account/whoami"+q, "as-secret", nil)
	}
	if got := who("").str(t, "user_id"); got != "@brbot:"+testServerName {
		t.Errorf("whoami without user_id: %s", got)
	}
	if got := who("@br_anna:"+testServerName).str(t, "user_id"); got != "@br_anna:"+testServerName {
		t.Errorf("whoami as the ghost: %s", got)
	}
	who(alice.ID).wantError(t, 403, "M_FORBIDDEN")
	who("@br_nobody:"+testServerName).wantError(t, 403, "M_FORBIDDEN")
	// A user's token ignores user_id.
	r := ts.do(t, "GET", "/_matrix/client/v3/account/whoami?user_id="+url.QueryEscape("@br_anna:"+testServerName), alice.Token, nil)
	if got := r.str(t, "user_id"); got != alice.ID {
		t.Errorf("a user's token with user_id: %s", got)
	}

	// Timestamp massaging, for the appservice only.
	roomID := ts.createRoom(t, alice, map[string]any{"preset": "public_chat"})
	ghost := "?user_id=" + url.QueryEscape("@br_anna:"+testServerName)
	ts.do(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+ghost, "as-secret", map[string]any{}).wantStatus(t, 200)
	send := func(token, query, txn string) string {
		r := ts.do(t, "PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/send/m.room.message/"+txn+query, token,
			map[string]any{"msgtype": "m.text", "body": txn})
		r.wantStatus(t, 200)
		return r.str(t, "event_id")
	}
	tsOf := func(eventID string) int64 {
		r := ts.do(t, "GET", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/event/"+url.PathEscape(eventID), alice.Token, nil)
		r.wantStatus(t, 200)
		return int64(r.json(t)["origin_server_ts"].(float64))
	}
	if got := tsOf(send("as-secret", ghost+"&ts=1500000000000", "g1")); got != 1500000000000 {
		t.Errorf("appservice ts: %d", got)
	}
	if got := tsOf(send(alice.Token, "?ts=1500000000000", "a1")); got == 1500000000000 {
		t.Error("an ordinary user's ts was honoured")
	}
	ts.do(t, "PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/send/m.room.message/g2"+ghost+"&ts=soon", "as-secret",
		map[string]any{"msgtype": "m.text", "body": "x"}).wantError(t, 400, "M_INVALID_PARAM")
	// Canonical JSON's integers end at 2^53-1: an event beyond would be
	// refused by every other server.
	if got := tsOf(send("as-secret", ghost+"&ts=9007199254740991", "g3")); got != 9007199254740991 {
		t.Errorf("appservice ts 2^53-1: %d", got)
	}
	ts.do(t, "PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/send/m.room.message/g4"+ghost+"&ts=9007199254740992", "as-secret",
		map[string]any{"msgtype": "m.text", "body": "x"}).wantError(t, 400, "M_INVALID_PARAM")

	// Login as a ghost with the as_token.
	login := func(token, user string) *response {
		return ts.do(t, "POST", "/_matrix/client/v3/login", token, map[string]any{"type": "m.login.application_service",
			"identifier": map[string]any{"type": "m.id.user", "user": user}})
	}
	if got := login("as-secret", "br_anna").str(t, "user_id"); got != "@br_anna:"+testServerName {
		t.Errorf("login: %s", got)
	}
	login("as-secret", "alice").wantError(t, 403, "M_FORBIDDEN")
	login("forged", "br_anna").wantError(t, 401, "M_UNKNOWN_TOKEN")

	// Ping: only its own ID; the answer is the boundary's.
	ts.do(t, "POST", "/_matrix/client/v1/appservice/other/ping", "as-secret", map[string]any{}).wantError(t, 403, "M_FORBIDDEN")
	ts.do(t, "POST", "/_matrix/client/v1/appservice/br/ping", alice.Token, map[string]any{}).wantError(t, 403, "M_FORBIDDEN")
	ts.do(t, "POST", "/_matrix/client/v1/appservice/br/ping", "as-secret", map[string]any{}).wantError(t, 400, "M_URL_NOT_SET")

	// MSC4190: the appservice makes a device for its ghost with PUT,
	// acts as it (MSC3202's device_id) and deletes it without UIA.
	dev := func(method, path, query string) *response {
		return ts.do(t, method, "/_matrix/client/v3/"+path+ghost+query, "as-secret", map[string]any{"display_name": "bridge device"})
	}
	dev("PUT", "devices/BRDEV", "").wantStatus(t, 200)
	if got := dev("GET", "account/whoami", "&org.matrix.msc3202.device_id=BRDEV").str(t, "device_id"); got != "BRDEV" {
		t.Errorf("whoami as the ghost's device: %q", got)
	}
	// MSC4326's stable device_id, which mautrix sends beside the
	// unstable one; the two must agree. Keys uploaded so are the
	// device's: another user claims them from it.
	if got := dev("GET", "account/whoami", "&device_id=BRDEV").str(t, "device_id"); got != "BRDEV" {
		t.Errorf("whoami with the stable device_id: %q", got)
	}
	dev("GET", "account/whoami", "&device_id=BRDEV&org.matrix.msc3202.device_id=OTHER").wantError(t, 400, "M_INVALID_PARAM")
	ts.do(t, "POST", "/_matrix/client/v3/keys/upload"+ghost+"&device_id=BRDEV&org.matrix.msc3202.device_id=BRDEV", "as-secret",
		map[string]any{"one_time_keys": map[string]any{"signed_curve25519:K1": map[string]any{"key": "k1",
			"signatures": map[string]any{"@br_anna:" + testServerName: map[string]any{"ed25519:BRDEV": "sig"}}}}}).wantStatus(t, 200)
	claimed := ts.do(t, "POST", "/_matrix/client/v3/keys/claim", alice.Token, map[string]any{"one_time_keys": map[string]any{
		"@br_anna:" + testServerName: map[string]any{"BRDEV": "signed_curve25519"}}})
	claimed.wantStatus(t, 200)
	if !strings.Contains(string(claimed.Body), `"signed_curve25519:K1"`) {
		t.Errorf("claim of the ghost device's key: %s", claimed.Body)
	}
	ts.do(t, "DELETE", "/_matrix/client/v3/devices/BRDEV"+ghost, "as-secret", nil).wantStatus(t, 200)
	dev("GET", "account/whoami", "&org.matrix.msc3202.device_id=BRDEV").wantError(t, 403, "M_FORBIDDEN")
	// A person still cannot make a device by PUT.
	ts.do(t, "PUT", "/_matrix/client/v3/devices/NEWDEV", alice.Token, map[string]any{"display_name": "x"}).wantError(t, 404, "M_NOT_FOUND")

	// Queries: a namespaced user nobody has yet is asked of the
	// appservice, which makes it (a profile look-up, an invite) — not
	// for a caller without a token, who could make it create accounts
	// without limit.
	ts.do(t, "GET", "/_matrix/client/v3/profile/"+url.PathEscape("@br_anon:"+testServerName), "", nil).wantError(t, 404, "M_NOT_FOUND")
	r = ts.do(t, "GET", "/_matrix/client/v3/profile/"+url.PathEscape("@br_new:"+testServerName), alice.Token, nil)
	r.wantStatus(t, 200)
	if r.json(t)["displayname"] != "Ghost br_new" {
		t.Errorf("profile of a ghost made on demand: %s", r.Body)
	}
	ts.do(t, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/invite", alice.Token,
		map[string]any{"user_id": "@br_invited:" + testServerName}).wantStatus(t, 200)
	if u, _ := ts.Accounts.Get("br_invited"); u == nil {
		t.Error("inviting a namespaced user did not make the appservice create it")
	}
	ts.do(t, "GET", "/_matrix/client/v3/directory/room/"+url.PathEscape("#br_x:"+testServerName), alice.Token, nil).
		wantError(t, 404, "M_NOT_FOUND")
	as.mu.Lock()
	if strings.Join(as.queried, ",") != "@br_new:test.local,@br_invited:test.local,#br_x:test.local" {
		t.Errorf("queried %v", as.queried)
	}
	as.mu.Unlock()

	// Exclusive aliases: a person cannot take one, the appservice can.
	ts.do(t, "PUT", "/_matrix/client/v3/directory/room/"+url.PathEscape("#br_mine:"+testServerName), alice.Token,
		map[string]any{"room_id": roomID}).wantError(t, 400, "M_EXCLUSIVE")
	ts.do(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"room_alias_name": "br_mine"}).
		wantError(t, 400, "M_EXCLUSIVE")
	ts.do(t, "PUT", "/_matrix/client/v3/directory/room/"+url.PathEscape("#br_mine:"+testServerName)+ghost, "as-secret",
		map[string]any{"room_id": roomID}).wantStatus(t, 200)

	// Third-party look-ups go to the appservices.
	if r := ts.do(t, "GET", "/_matrix/client/v3/thirdparty/protocols", alice.Token, nil); r.json(t)["tele"] == nil {
		t.Errorf("protocols: %s", r.Body)
	}
	ts.do(t, "GET", "/_matrix/client/v3/thirdparty/protocol/tele", alice.Token, nil).wantStatus(t, 200)
	ts.do(t, "GET", "/_matrix/client/v3/thirdparty/protocol/irc", alice.Token, nil).wantError(t, 404, "M_NOT_FOUND")
	if r := ts.do(t, "GET", "/_matrix/client/v3/thirdparty/user/tele?phone=123", alice.Token, nil); !strings.Contains(string(r.Body), "@br_123:test.local") {
		t.Errorf("user lookup: %s", r.Body)
	}

	// A human's presence change reaches the appservices' queue (typing
	// and receipts reach it from the room engine: internal/e2e).
	ts.do(t, "PUT", "/_matrix/client/v3/presence/"+url.PathEscape(alice.ID)+"/status", alice.Token,
		map[string]any{"presence": "unavailable"}).wantStatus(t, 200)
	ts.do(t, "PUT", "/_matrix/client/v3/sendToDevice/m.test/td1", alice.Token, map[string]any{"messages": map[string]any{
		"@br_anna:" + testServerName: map[string]any{"*": map[string]any{"hello": "ghost"}}}}).wantStatus(t, 200)
	as.mu.Lock()
	defer as.mu.Unlock()
	if len(as.toDevice) != 1 || as.toDevice[0] != "m.test @br_anna:"+testServerName {
		t.Errorf("to-device: %v", as.toDevice)
	}
	if len(as.presence) != 1 || as.presence[0] != alice.ID+" unavailable" {
		t.Errorf("presence: %v", as.presence)
	}
}
