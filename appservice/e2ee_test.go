package appservice

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hearth-chat/hearth/internal/e2ee"
	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/store"
)

// keysE2EE is the queue's MSC3202 source over a real key store and room
// engine. Its device lists are the changed users sharing a room with the
// user: the client API's membership rules, which the daemon plugs in, run
// in internal/e2e's TestAppserviceEncryptedBridge.
type keysE2EE struct {
	keys  *e2ee.Service
	rooms *room.Engine
}

func (k keysE2EE) CountsOf(own func(string) bool) (map[string]map[string]e2ee.DeviceCounts, error) {
	return k.keys.CountsOf(own)
}
func (k keysE2EE) ChangedUsers(from, to uint64) ([]string, error) {
	return k.keys.ChangedUsers(from, to)
}
func (k keysE2EE) SharesRoom(a, b string) bool { return k.rooms.SharesRoom(a, b) }
func (k keysE2EE) DeviceListChanges(user string, since, now uint64) ([]string, []string, error) {
	users, err := k.keys.ChangedUsers(since, now)
	var out []string
	for _, u := range users {
		if u == user || k.rooms.SharesRoom(user, u) {
			out = append(out, u)
		}
	}
	return out, nil, err
}

// msc3202World is a room of alice's with the ghost of appservice "br",
// registered with org.matrix.msc3202, and a real key store.
func msc3202World(t *testing.T, path string, as *asServer, sec Secrets, add bool) (*queueWorld, *e2ee.Service) {
	t.Helper()
	w := newQueueWorld(t, path, sec, as)
	if add {
		y := strings.Replace(regYAML("br", "br", true), "http://127.0.0.1:29318", as.URL, 1) + "org.matrix.msc3202: true\n"
		if err := w.reg.Add(context.Background(), mustParse(t, y)); err != nil {
			t.Fatal(err)
		}
	}
	w.start(t, nil)
	keys := e2ee.New(w.db, qServer)
	w.q.SetE2EE(keysE2EE{keys, w.rooms})
	return w, keys
}

// otkCounts is the MSC3202 one-time key counts of a transaction, or nil.
func otkCounts(t *testing.T, raw string) map[string]map[string]map[string]int {
	t.Helper()
	var body struct {
		OTK map[string]map[string]map[string]int `json:"org.matrix.msc3202.device_one_time_keys_count"`
	}
	if err := json.Unmarshal([]byte(raw), &body); err != nil {
		t.Fatal(err)
	}
	return body.OTK
}

// TestQueueMSC3202: an appservice registered with org.matrix.msc3202 gets
// its users' device-list changes and one-time key counts in
// transactions: a key upload with no event sends a transaction of its
// own, a count goes again only when it changed, a failed transaction is
// retried with exactly its first MSC3202 data under the same ID (the
// newer count follows in the next), and a restart does not repeat what
// was acknowledged.
func TestQueueMSC3202(t *testing.T) {
	as := newASServer(t)
	path := filepath.Join(t.TempDir(), "hearth.db")
	sec := mapSecrets{}
	w, keys := msc3202World(t, path, as, sec, true)
	ctx := context.Background()
	ghost := "@br_ghost:" + qServer
	roomID, err := w.rooms.CreateRoom(ctx, alice, room.Profile{}, room.CreateRequest{Preset: "private_chat", Invite: []string{ghost}})
	if err != nil {
		t.Fatal(err)
	}
	w.roomID = roomID
	if _, err := w.rooms.ChangeMembership(ctx, room.MembershipRequest{Sender: ghost, RoomID: roomID, Target: ghost, Membership: "join"}); err != nil {
		t.Fatal(err)
	}
	w.settle(t)

	up := &e2ee.Upload{DeviceKeys: json.RawMessage(`{"user_id":"` + ghost + `","device_id":"GD"}`)}
	for i := range 3 {
		up.OneTimeKeys = append(up.OneTimeKeys, e2ee.Key{Algorithm: "signed_curve25519", ID: fmt.Sprint("K", i),
			JSON: json.RawMessage(fmt.Sprintf(`{"key":"k%d","signatures":{"x":{"y":"z"}}}`, i))})
	}
	if _, err := keys.Store(ctx, ghost, "GD", up); err != nil {
		t.Fatal(err)
	}
	count := func(raw string) int { return otkCounts(t, raw)[ghost]["GD"]["signed_curve25519"] }
	var first asTxn
	as.waitFor(t, "the upload's transaction", func() bool {
		as.mu.Lock()
		defer as.mu.Unlock()
		for _, s := range as.seen {
			if otkCounts(t, s.Raw) != nil {
				first = s
				return true
			}
		}
		return false
	})
	if count(first.Raw) != 3 || len(first.Bodies) != 0 ||
		!strings.Contains(first.Raw, `"org.matrix.msc3202.device_lists":{"changed":["`+ghost+`"],"left":[]}`) {
		t.Fatalf("the upload's transaction: %s", first.Raw)
	}

	// A claim while the appservice fails: the message's transaction
	// carries count 2 and is retried as it was, with the count of a
	// second claim in the next one.
	claim := func() {
		t.Helper()
		if _, _, err := keys.Claim(ctx, map[string]map[string]string{ghost: {"GD": "signed_curve25519"}}); err != nil {
			t.Fatal(err)
		}
	}
	as.mu.Lock()
	as.seen = nil
	as.mu.Unlock()
	as.setMode("fail")
	claim()
	w.say(t, "m1")
	as.waitFor(t, "a second failed attempt", func() bool {
		as.mu.Lock()
		defer as.mu.Unlock()
		return len(as.seen) >= 2
	})
	claim()
	as.setMode("ok")
	as.waitFor(t, "the count after the second claim", func() bool {
		as.mu.Lock()
		defer as.mu.Unlock()
		return slices.ContainsFunc(as.seen, func(s asTxn) bool { return s.Mode == "ok" && otkCounts(t, s.Raw) != nil && count(s.Raw) == 1 })
	})
	as.mu.Lock()
	byID := map[string]string{}
	var counts []int
	for _, s := range as.seen {
		if prev, ok := byID[s.ID]; ok && prev != s.Raw {
			t.Fatalf("transaction %s sent as %s, then as %s", s.ID, prev, s.Raw)
		}
		byID[s.ID] = s.Raw
		if s.Mode == "ok" && otkCounts(t, s.Raw) != nil {
			counts = append(counts, count(s.Raw))
		}
	}
	as.mu.Unlock()
	if !slices.Equal(counts, []int{2, 1}) || texts(as.delivered()) != "m1" {
		t.Fatalf("acknowledged counts %v, messages %q", counts, texts(as.delivered()))
	}

	// The appservice has answered; wait until Hearth has stored that (a
	// stop before would be the crash window, which repeats).
	as.waitFor(t, "the acknowledgement stored", func() bool {
		var st queueState
		w.db.View(func(tx *store.Tx) error { st, _ = loadState(tx, "br"); return nil })
		return st.PendingE2EE == nil && strings.Contains(st.E2EESent[ghost+"\x00GD"], `"signed_curve25519":1}`) &&
			w.reg.Health("br").Queued == 0
	})

	// A restart: what was acknowledged is not sent again (E2EESent is
	// stored); a later claim goes with the next transaction.
	w.close()
	w.db = nil
	as.mu.Lock()
	as.seen = nil
	as.mu.Unlock()
	w, keys = msc3202World(t, path, as, sec, false)
	defer w.close()
	w.roomID = roomID
	w.say(t, "m2")
	as.waitFor(t, "m2", func() bool { return strings.HasSuffix(texts(as.delivered()), "m2") })
	as.mu.Lock()
	for _, s := range as.seen {
		if otkCounts(t, s.Raw) != nil {
			t.Errorf("an acknowledged count sent again after a restart: %s", s.Raw)
		}
	}
	as.mu.Unlock()
	claim()
	w.say(t, "m3")
	as.waitFor(t, "the last count", func() bool {
		as.mu.Lock()
		defer as.mu.Unlock()
		return slices.ContainsFunc(as.seen, func(s asTxn) bool { return otkCounts(t, s.Raw) != nil && count(s.Raw) == 0 })
	})
}

// listsSource is an E2EE whose device lists and shared rooms are given:
// the merge of several users' lists is this package's own rule.
type listsSource struct {
	changed, left map[string][]string // by appservice user
	shares        map[[2]string]bool
}

func (l listsSource) CountsOf(own func(string) bool) (map[string]map[string]e2ee.DeviceCounts, error) {
	out := map[string]map[string]e2ee.DeviceCounts{}
	for u := range l.changed {
		out[u] = map[string]e2ee.DeviceCounts{"D": {OneTimeKeys: map[string]int{"signed_curve25519": 1}}}
	}
	return out, nil
}
func (l listsSource) ChangedUsers(from, to uint64) ([]string, error) { return nil, nil }
func (l listsSource) SharesRoom(a, b string) bool                    { return l.shares[[2]string{a, b}] }
func (l listsSource) DeviceListChanges(u string, since, now uint64) ([]string, []string, error) {
	return l.changed[u], l.left[u], nil
}

// TestMSC3202ListsMerged: the appservice's device lists are its users'
// merged: a user one of them stopped sharing a room with is left only
// if no other still shares one (nor reports it changed).
func TestMSC3202ListsMerged(t *testing.T) {
	const g1, g2 = "@br_1:" + qServer, "@br_2:" + qServer
	src := listsSource{
		changed: map[string][]string{g1: {g1}, g2: {"@z:x"}},
		left:    map[string][]string{g1: {"@x:x", "@y:x", "@z:x"}},
		shares:  map[[2]string]bool{{g2, "@x:x"}: true},
	}
	s := &Service{Reg: Registration{ID: "br", SenderLocalpart: "brbot", MSC3202: true,
		Namespaces: Namespaces{Users: []Namespace{{Regex: "^@br_"}}}}, server: qServer}
	if err := s.Reg.validate(false); err != nil {
		t.Fatal(err)
	}
	p, err := workOutE2EE(src, s, queueState{}, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if p == nil || !slices.Equal(p.Lists.Changed, []string{g1, "@z:x"}) || !slices.Equal(p.Lists.Left, []string{"@y:x"}) {
		t.Fatalf("merged lists: %+v", p)
	}
}

// TestQueueMSC3202RetryAfterRestart: a failed transaction that carried
// only MSC3202 data is retried after a restart under the same ID with the
// same data, and no event queued meanwhile joins it.
func TestQueueMSC3202RetryAfterRestart(t *testing.T) {
	as := newASServer(t)
	path := filepath.Join(t.TempDir(), "hearth.db")
	sec := mapSecrets{}
	w, keys := msc3202World(t, path, as, sec, true)
	ctx := context.Background()
	ghost := "@br_ghost:" + qServer
	as.setMode("fail")
	up := &e2ee.Upload{DeviceKeys: json.RawMessage(`{"user_id":"` + ghost + `","device_id":"GD"}`)}
	if _, err := keys.Store(ctx, ghost, "GD", up); err != nil {
		t.Fatal(err)
	}
	as.waitFor(t, "a failed attempt stored", func() bool {
		var st queueState
		w.db.View(func(tx *store.Tx) error { st, _ = loadState(tx, "br"); return nil })
		return st.PendingE2EE != nil
	})
	w.close()
	w.db = nil
	as.mu.Lock()
	failed := as.seen[0]
	as.seen = nil
	as.mu.Unlock()
	as.setMode("ok")
	w, _ = msc3202World(t, path, as, sec, false)
	defer w.close()
	as.waitFor(t, "the retry", func() bool {
		as.mu.Lock()
		defer as.mu.Unlock()
		return len(as.seen) > 0
	})
	as.mu.Lock()
	defer as.mu.Unlock()
	if got := as.seen[0]; got.ID != failed.ID || got.Raw != failed.Raw || len(got.Bodies) != 0 {
		t.Fatalf("retried as %s %s, first sent as %s %s", got.ID, got.Raw, failed.ID, failed.Raw)
	}
}
