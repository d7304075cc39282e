package matrix_test

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/hearth-chat/hearth/internal/e2ee"
	"github.com/hearth-chat/hearth/localapi/matrix"
)

// sharedRoom is a room where one user sends and the others differ in
// every per-user way a /sync response has: unread counts, one-time key
// counts, a to-device message to acknowledge, an ignored sender, having
// left.
type sharedRoom struct {
	ps                                *pushServer
	watch                             *matrix.SyncWatch
	roomID                            string
	alice, bob, carol, dave, erin, fr *testUser
	beforeToDevice                    string // a token from before carol's to-device message
}

func newSharedRoom(t *testing.T) *sharedRoom {
	watch := matrix.WatchSyncs(t) // before the server, so it outlives it
	ps := newPushServer(t)
	ps.API.SetKeys(e2ee.New(ps.DB, testServerName))
	r := &sharedRoom{ps: ps, watch: watch}
	r.alice, r.bob, r.carol = ps.register(t, "alice"), ps.register(t, "bob"), ps.register(t, "carol")
	r.dave, r.erin, r.fr = ps.register(t, "dave"), ps.register(t, "erin"), ps.register(t, "frank")
	r.roomID = ps.createRoom(t, r.alice, map[string]any{"preset": "public_chat"})
	for _, u := range []*testUser{r.bob, r.carol, r.dave, r.erin, r.fr} {
		covJoin(t, ps.testServer, u, r.roomID)
	}
	ps.do(t, "POST", covRoomPath(r.roomID)+"/leave", r.dave.Token, map[string]any{}).wantStatus(t, 200)
	// Rooms with nothing in the spans the tests sync: bob is in another
	// with a message, frank is invited to a third.
	other := ps.createRoom(t, r.alice, map[string]any{"preset": "public_chat"})
	covJoin(t, ps.testServer, r.bob, other)
	ps.send(t, r.alice, other, "o1", "elsewhere")
	third := ps.createRoom(t, r.alice, nil)
	ps.do(t, "POST", covRoomPath(third)+"/invite", r.alice.Token, map[string]any{"user_id": r.fr.ID}).wantStatus(t, 200)
	// carol has read an earlier message: her count is lower than bob's.
	read := ps.send(t, r.alice, r.roomID, "m0", "before")
	ps.send(t, r.alice, r.roomID, "m1", "unread")
	ps.do(t, "POST", covRoomPath(r.roomID)+"/receipt/m.read/"+url.PathEscape(read), r.carol.Token, map[string]any{}).wantStatus(t, 200)
	ps.do(t, "PUT", covV3+"/user/"+url.PathEscape(r.erin.ID)+"/account_data/m.ignored_user_list", r.erin.Token,
		map[string]any{"ignored_users": map[string]any{r.alice.ID: map[string]any{}}}).wantStatus(t, 200)
	ps.do(t, "POST", covV3+"/keys/upload", r.fr.Token, map[string]any{"one_time_keys": map[string]any{
		"signed_curve25519:AAAA": signedKey(r.fr, "k1"), "signed_curve25519:AAAB": signedKey(r.fr, "k2")}}).wantStatus(t, 200)
	// carol's token will acknowledge a to-device message: her response
	// deletes it.
	r.beforeToDevice = covSync(t, ps.testServer, r.alice, "")["next_batch"].(string)
	ps.do(t, "PUT", covV3+"/sendToDevice/m.test/td1", r.bob.Token, map[string]any{"messages": map[string]any{
		r.carol.ID: map[string]any{"*": map[string]any{"hello": "carol"}}}}).wantStatus(t, 200)
	// Every user is online before the spans the tests sync: a presence
	// change is a position of its own, which no span may hold.
	for _, u := range []*testUser{r.alice, r.bob, r.carol, r.dave, r.erin, r.fr} {
		covSync(t, ps.testServer, u, "")
	}
	ps.settle(t)
	return r
}

// since is a token every user may sync from: the stream's current one.
func (r *sharedRoom) since(t *testing.T) string {
	r.ps.settle(t)
	return covSync(t, r.ps.testServer, r.alice, "")["next_batch"].(string)
}

// sharedAgainstOwn syncs users from since with query as the server answers
// them, runs between (if any), syncs them again with every response
// built, and reports each response that differs (what names the case).
// It returns the first round's bodies and which of them were built.
func (r *sharedRoom) sharedAgainstOwn(t *testing.T, what, since, query string, users []*testUser, between ...func()) (map[string]string, map[string]bool) {
	t.Helper()
	shared, built := r.syncAll(t, since, query, users)
	for _, fn := range between {
		fn()
	}
	r.ps.API.ShareSyncs(false)
	own, _ := r.syncAll(t, since, query, users)
	r.ps.API.ShareSyncs(true)
	for _, u := range users {
		if shared[u.ID] != own[u.ID] {
			t.Errorf("%s: %s's response\nshared: %s\n   own: %s", what, u.ID, shared[u.ID], own[u.ID])
		}
	}
	return shared, built
}

// syncAll syncs each user from since with the rest of the query given as
// is, in order, and returns each response's body with its events' ages
// zeroed, and whether it was built.
func (r *sharedRoom) syncAll(t *testing.T, since, query string, users []*testUser) (map[string]string, map[string]bool) {
	t.Helper()
	age := regexp.MustCompile(`"age":\d+`)
	bodies, built := map[string]string{}, map[string]bool{}
	for _, u := range users {
		before := r.watch.Builds(u.ID)
		p := covV3 + "/sync?timeout=0&since=" + url.QueryEscape(since) + query
		res := r.ps.do(t, "GET", p, u.Token, nil)
		res.wantStatus(t, 200)
		bodies[u.ID] = age.ReplaceAllString(string(res.Body), `"age":0`)
		built[u.ID] = r.watch.Builds(u.ID) > before
	}
	return bodies, built
}

// TestSharedSyncIsOwnBuild: after a message, the long polls of its room
// answered from one kept response get byte for byte what their own builds
// give (ages aside), each with its own unread and key counts; a sender, a
// user who ignores the sender and one who left build their own. With and
// without lazy loading and threaded counts (Element's filter has both).
func TestSharedSyncIsOwnBuild(t *testing.T) {
	r := newSharedRoom(t)
	since := r.since(t)
	r.ps.send(t, r.alice, r.roomID, "m2", "hello")
	r.ps.send(t, r.alice, r.roomID, "m3", "again")
	r.ps.settle(t)
	users := []*testUser{r.bob, r.carol, r.fr, r.alice, r.erin, r.dave}
	for _, filter := range []string{"", `{"room":{"state":{"lazy_load_members":true},"timeline":{"unread_thread_notifications":true}}}`} {
		query := ""
		if filter != "" {
			query = "&filter=" + url.QueryEscape(filter)
		}
		shared, built := r.sharedAgainstOwn(t, "filter "+filter, since, query, users, func() {
			// carol's shared response acknowledged her to-device message
			// (before her own build acknowledges it again).
			if td := covSync(t, r.ps.testServer, r.carol, r.beforeToDevice)["to_device"]; !strings.Contains(fmt.Sprint(td), "events:[]") {
				t.Errorf("carol's to-device message is still queued: %v", td)
			}
		})
		for u, want := range map[*testUser]bool{r.bob: true, r.carol: false, r.fr: false, r.alice: true, r.erin: true, r.dave: true} {
			if built[u.ID] != want {
				t.Errorf("filter %q: %s built its own response: %v, want %v", filter, u.ID, built[u.ID], want)
			}
		}
		if !strings.Contains(shared[r.fr.ID], `"device_one_time_keys_count":{"signed_curve25519":2}`) {
			t.Errorf("frank's key counts are not his own: %s", shared[r.fr.ID])
		}
		if shared[r.bob.ID] == shared[r.carol.ID] {
			t.Errorf("bob and carol got the same response, unread counts included: %s", shared[r.bob.ID])
		}
	}
}

// TestSharedSyncOnlyForMessages: a span holding anything but message
// events of one room without relations (a state event, an edit of its own
// message, a receipt, a typing notice) is built by every user.
func TestSharedSyncOnlyForMessages(t *testing.T) {
	r := newSharedRoom(t)
	users := []*testUser{r.bob, r.carol, r.fr}
	for name, act := range map[string]func(){
		"topic": func() {
			r.ps.do(t, "PUT", covRoomPath(r.roomID)+"/state/m.room.topic/", r.alice.Token, map[string]any{"topic": "t"}).wantStatus(t, 200)
		},
		"edit": func() {
			orig := r.ps.send(t, r.alice, r.roomID, "e1", "typo")
			sendContent(t, r.ps, r.alice, r.roomID, "e2", map[string]any{"msgtype": "m.text", "body": "* fixed",
				"m.new_content": map[string]any{"msgtype": "m.text", "body": "fixed"},
				"m.relates_to":  map[string]any{"rel_type": "m.replace", "event_id": orig}})
		},
		"receipt": func() {
			ev := r.ps.send(t, r.alice, r.roomID, "r1", "read me")
			r.ps.do(t, "POST", covRoomPath(r.roomID)+"/receipt/m.read/"+url.PathEscape(ev), r.erin.Token, map[string]any{}).wantStatus(t, 200)
		},
		"typing": func() {
			r.ps.send(t, r.alice, r.roomID, "y1", "typing next")
			r.ps.do(t, "PUT", covRoomPath(r.roomID)+"/typing/"+url.PathEscape(r.erin.ID), r.erin.Token,
				map[string]any{"typing": true, "timeout": 30000}).wantStatus(t, 200)
		},
	} {
		since := r.since(t)
		act()
		r.ps.settle(t)
		_, built := r.sharedAgainstOwn(t, name, since, "", users)
		for _, u := range users {
			if !built[u.ID] {
				t.Errorf("%s: %s's response was shared", name, u.ID)
			}
		}
	}
}

// TestSharedSyncFromMemory: once a shared response's user part has been
// read for a user, the next span's comes from memory, and it still equals
// the user's own build after what can move it between two spans: a claim
// of a one-time key (which takes no stream position) and a read receipt
// (which does, so the span after it starts past what was remembered).
func TestSharedSyncFromMemory(t *testing.T) {
	r := newSharedRoom(t)
	users := []*testUser{r.bob, r.carol, r.fr}
	span := func(name string, between func()) (map[string]string, int64) {
		t.Helper()
		between()
		since := r.since(t)
		r.ps.send(t, r.alice, r.roomID, name, name)
		r.ps.settle(t)
		before := r.ps.API.SharedFromMemory()
		shared, _ := r.sharedAgainstOwn(t, name, since, "", users)
		// The second round, every response built, reads no memo.
		return shared, r.ps.API.SharedFromMemory() - before
	}
	span("s1", func() {})
	if _, n := span("s2", func() {}); n != 2 {
		t.Errorf("s2: %d responses took their user's part from memory, want 2 (carol's and frank's)", n)
	}
	shared, _ := span("s3", func() {
		r.ps.do(t, "POST", covV3+"/keys/claim", r.bob.Token, map[string]any{"one_time_keys": map[string]any{
			r.fr.ID: map[string]any{r.fr.DeviceID: "signed_curve25519"}}}).wantStatus(t, 200)
	})
	if !strings.Contains(shared[r.fr.ID], `"device_one_time_keys_count":{"signed_curve25519":1}`) {
		t.Errorf("frank's key count after a claim: %s", shared[r.fr.ID])
	}
	last := r.ps.send(t, r.alice, r.roomID, "s4", "read up to here")
	shared, _ = span("s5", func() {
		r.ps.do(t, "POST", covRoomPath(r.roomID)+"/receipt/m.read/"+url.PathEscape(last), r.carol.Token, map[string]any{}).wantStatus(t, 200)
	})
	if !strings.Contains(shared[r.carol.ID], `"notification_count":1`) {
		t.Errorf("carol's unread count after her receipt: %s", shared[r.carol.ID])
	}
}

// signedKey is a one-time key of u's device as a client uploads it.
func signedKey(u *testUser, key string) map[string]any {
	return map[string]any{"key": key, "signatures": map[string]any{u.ID: map[string]any{"ed25519:" + u.DeviceID: "sig"}}}
}
