package search

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/store"
	"github.com/hearth-chat/hearth/internal/stream"
)

const alice, bob, eve = "@alice:test.local", "@bob:test.local", "@eve:test.local"

type env struct {
	t     *testing.T
	path  string
	db    *store.DB
	n     *stream.Notifier
	rooms *room.Engine
	ix    *Index
	key   ed25519.PrivateKey
}

// open opens (or reopens) the store at path with a room engine and a
// running index, wired as daemon.Start wires them.
func open(t *testing.T, path string, key ed25519.PrivateKey) *env {
	t.Helper()
	en := &env{t: t, path: path, key: key}
	st, err := room.Open(room.Options{Path: path, Engine: room.Config{ServerName: "test.local", KeyID: "ed25519:t", PrivateKey: key}})
	if err != nil {
		t.Fatal(err)
	}
	en.db, en.n, en.rooms = st.DB, st.Notifier, st.Engine
	en.ix = New(en.db, en.rooms, en.n)
	en.ix.Start()
	return en
}

func newEnv(t *testing.T) *env {
	_, key, _ := ed25519.GenerateKey(nil)
	en := open(t, filepath.Join(t.TempDir(), "h.db"), key)
	t.Cleanup(func() { en.close() })
	return en
}

func (en *env) close() {
	if en.db == nil {
		return
	}
	en.ix.Stop()
	en.db.Close()
	en.db = nil
}

func (en *env) createRoom(creator string, members ...string) string {
	en.t.Helper()
	ctx := context.Background()
	id, err := en.rooms.CreateRoom(ctx, creator, room.Profile{}, room.CreateRequest{Preset: "public_chat"})
	if err != nil {
		en.t.Fatal(err)
	}
	for _, m := range members {
		en.membership(id, m, "join")
	}
	return id
}

func (en *env) membership(roomID, user, m string) {
	en.t.Helper()
	if _, err := en.rooms.ChangeMembership(context.Background(), room.MembershipRequest{Sender: user, RoomID: roomID, Target: user, Membership: m}); err != nil {
		en.t.Fatal(err)
	}
}

func (en *env) send(sender, roomID, body string) string {
	en.t.Helper()
	c, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": body})
	id, err := en.rooms.Send(context.Background(), room.SendRequest{Sender: sender, RoomID: roomID, Type: "m.room.message", Content: c})
	if err != nil {
		en.t.Fatal(err)
	}
	return id
}

// caughtUp waits (on the index's own signal, not a timer) until every
// committed event is indexed.
func (en *env) caughtUp() {
	en.t.Helper()
	pos, _ := en.n.Pos()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := en.ix.WaitFor(ctx, pos); err != nil {
		en.t.Fatalf("index did not catch up to %d: %v", pos, err)
	}
}

func (en *env) search(q Query) *Results {
	en.t.Helper()
	en.caughtUp()
	res, err := en.ix.Search(q)
	if err != nil {
		en.t.Fatal(err)
	}
	return res
}

func hitIDs(res *Results) []string {
	var out []string
	for _, h := range res.Hits {
		out = append(out, h.Event.EventID)
	}
	return out
}

func TestTokenize(t *testing.T) {
	got := tokenize("Héllo, WORLD! naïve café-au-lait 42x ÜBER straße")
	want := []string{"héllo", "world", "naïve", "café", "au", "lait", "42x", "über", "straße"}
	if !slices.Equal(got, want) {
		t.Fatalf("tokenize = %q, want %q", got, want)
	}
}

func TestRankRecentAndPrefix(t *testing.T) {
	en := newEnv(t)
	r := en.createRoom(alice)
	weak := en.send(alice, r, "a long message that mentions the martians only once among many other words here")
	strong := en.send(alice, r, "martians martians")
	en.send(alice, r, "nothing relevant")
	newest := en.send(alice, r, "Martians landed")
	// The server cannot read encrypted events, and never indexes them even
	// when a client puts a plaintext body beside the ciphertext.
	if _, err := en.rooms.Send(context.Background(), room.SendRequest{Sender: alice, RoomID: r, Type: "m.room.encrypted",
		Content: json.RawMessage(`{"algorithm":"m.megolm.v1.aes-sha2","ciphertext":"x","body":"martians"}`)}); err != nil {
		t.Fatal(err)
	}

	res := en.search(Query{UserID: alice, Term: "martians"})
	if got := hitIDs(res); !slices.Equal(got, []string{strong, newest, weak}) || res.Count != 3 {
		t.Fatalf("rank order = %v (count %d), want strong, newest, weak", got, res.Count)
	}
	if res.Hits[0].Rank <= res.Hits[2].Rank {
		t.Fatalf("ranks not descending: %v", res.Hits)
	}
	res = en.search(Query{UserID: alice, Term: "martians", Recent: true})
	if got := hitIDs(res); !slices.Equal(got, []string{newest, strong, weak}) {
		t.Fatalf("recent order = %v", got)
	}
	// Terms are ANDed; the last one also matches as a prefix.
	res = en.search(Query{UserID: alice, Term: "martians lan"})
	if got := hitIDs(res); !slices.Equal(got, []string{newest}) || !slices.Contains(res.Highlights, "landed") {
		t.Fatalf("prefix search = %v highlights %v", got, res.Highlights)
	}
	if res := en.search(Query{UserID: alice, Term: "martians", Fields: FieldName}); len(res.Hits) != 0 {
		t.Fatalf("keys content.name matched bodies: %v", hitIDs(res))
	}
}

func TestPaginationNoDuplicatesOrGaps(t *testing.T) {
	en := newEnv(t)
	r := en.createRoom(alice)
	var want []string
	for i := range 23 {
		// Varying lengths give varying ranks.
		want = append(want, en.send(alice, r, fmt.Sprintf("needle %d %s", i, repeat("hay ", i%5))))
	}
	for _, recent := range []bool{false, true} {
		var got []string
		var arrived string
		token := ""
		for pages := 0; ; pages++ {
			res := en.search(Query{UserID: alice, Term: "needle", Recent: recent, Limit: 5, Token: token})
			got = append(got, hitIDs(res)...)
			if pages == 1 {
				arrived = en.send(alice, r, "needle arriving between pages") // must not shift later pages
			}
			if res.NextBatch == "" {
				break
			}
			token = res.NextBatch
		}
		sorted := slices.Clone(got)
		slices.Sort(sorted)
		if len(slices.Compact(sorted)) != len(got) || len(got) != len(want) {
			t.Fatalf("recent=%v: %d results over pages (want %d, no duplicates)", recent, len(got), len(want))
		}
		if recent {
			slices.Reverse(got)
			if !slices.Equal(got, want) {
				t.Fatal("recent pages are not newest first")
			}
		}
		want = append(want, arrived) // the next query sees it
	}
	if _, err := en.ix.Search(Query{UserID: alice, Term: "needle", Token: "garbage"}); err == nil {
		t.Fatal("a bad token was accepted")
	}
}

func repeat(s string, n int) string {
	out := ""
	for range n {
		out += s
	}
	return out
}

func TestContextAndRoomFilter(t *testing.T) {
	en := newEnv(t)
	r1 := en.createRoom(alice, bob)
	r2 := en.createRoom(alice)
	b1 := en.send(alice, r1, "before one")
	b2 := en.send(bob, r1, "before two")
	hit := en.send(alice, r1, "the zebra crossing")
	a1 := en.send(bob, r1, "after one")
	other := en.send(alice, r2, "another zebra")

	res := en.search(Query{UserID: alice, Term: "zebra", Context: true, BeforeLimit: 2, AfterLimit: 1, IncludeProfile: true, Recent: true})
	if got := hitIDs(res); !slices.Equal(got, []string{other, hit}) {
		t.Fatalf("hits = %v", got)
	}
	c := res.Hits[1].Context
	if c == nil || len(c.Before) != 2 || c.Before[0].EventID != b2 || c.Before[1].EventID != b1 || len(c.After) != 1 || c.After[0].EventID != a1 {
		t.Fatalf("context = %+v", c)
	}
	if _, ok := c.Profiles[alice]; !ok {
		t.Fatalf("profile_info lacks the sender: %v", c.Profiles)
	}
	res = en.search(Query{UserID: alice, Term: "zebra", Rooms: []string{r2}})
	if got := hitIDs(res); !slices.Equal(got, []string{other}) {
		t.Fatalf("rooms filter: %v", got)
	}
	res = en.search(Query{UserID: alice, Term: "zebra", NotRooms: []string{r2}})
	if got := hitIDs(res); !slices.Equal(got, []string{hit}) {
		t.Fatalf("not_rooms filter: %v", got)
	}
	res = en.search(Query{UserID: alice, Term: "one", Senders: []string{bob}})
	if got := hitIDs(res); !slices.Equal(got, []string{a1}) {
		t.Fatalf("senders filter: %v", got)
	}
}

// membersOnlyRoom is a room of alice and bob whose history is for its
// joined members only (history_visibility joined).
func (en *env) membersOnlyRoom() string {
	en.t.Helper()
	r := en.createRoom(alice, bob)
	sk := ""
	if _, err := en.rooms.Send(context.Background(), room.SendRequest{Sender: alice, RoomID: r, Type: "m.room.history_visibility", StateKey: &sk,
		Content: json.RawMessage(`{"history_visibility":"joined"}`)}); err != nil {
		en.t.Fatal(err)
	}
	return r
}

func TestVisibilityAndRedaction(t *testing.T) {
	ctx := context.Background()
	en := newEnv(t)
	r := en.membersOnlyRoom()
	early := en.send(alice, r, "secret plan alpha")
	en.membership(r, bob, "leave")
	en.send(alice, r, "secret plan beta")

	if res := en.search(Query{UserID: bob, Term: "secret"}); !slices.Equal(hitIDs(res), []string{early}) || res.Count != 1 {
		t.Fatalf("bob after leaving found %v (count %d), want only the earlier message", hitIDs(res), res.Count)
	}
	if res := en.search(Query{UserID: eve, Term: "secret"}); len(res.Hits) != 0 || res.Count != 0 {
		t.Fatalf("a non-member found %v", hitIDs(res))
	}
	if res := en.search(Query{UserID: alice, Term: "secret"}); len(res.Hits) != 2 {
		t.Fatalf("alice found %v", hitIDs(res))
	}
	if _, err := en.rooms.Send(ctx, room.SendRequest{Sender: alice, RoomID: r, Type: "m.room.redaction", Redacts: early, TxnID: "r"}); err != nil {
		t.Fatal(err)
	}
	if res := en.search(Query{UserID: alice, Term: "alpha"}); len(res.Hits) != 0 || res.Count != 0 {
		t.Fatalf("a redacted event is still found: %v", hitIDs(res))
	}
	// The postings are gone, not just filtered at read time.
	en.db.View(func(tx *store.Tx) error {
		if k, _ := tx.Cursor(store.SearchTerms).Seek([]byte("alpha\x00")); k != nil && string(k[:6]) == "alpha\x00" {
			t.Fatal("postings of the redacted event remain")
		}
		return nil
	})
}

func TestCatchUpAfterRestart(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	path := filepath.Join(t.TempDir(), "h.db")
	en := open(t, path, key)
	r := en.createRoom(alice)
	en.send(alice, r, "before restart")
	en.caughtUp()
	// Stop the index, then write while nobody indexes.
	en.ix.Stop()
	later := en.send(alice, r, "written while the index was stopped")
	en.db.Close()

	en = open(t, path, key)
	defer en.close()
	if got := hitIDs(en.search(Query{UserID: alice, Term: "stopped"})); !slices.Equal(got, []string{later}) {
		t.Fatalf("after restart found %v", got)
	}
	if res := en.search(Query{UserID: alice, Term: "restart"}); len(res.Hits) != 1 {
		t.Fatalf("the earlier message was indexed twice or lost: %v", hitIDs(res))
	}
}

// A full page carries next_batch even when nothing follows, and the page
// after it is empty and has none (Complement's "Can back-paginate search
// results": 20 hits in pages of 10, then an empty third page).
func TestFullPageHasNextBatch(t *testing.T) {
	en := newEnv(t)
	r := en.createRoom(alice)
	for i := range 4 {
		en.send(alice, r, fmt.Sprintf("needle %d", i))
	}
	res := en.search(Query{UserID: alice, Term: "needle", Recent: true, Limit: 2})
	if len(res.Hits) != 2 || res.NextBatch == "" {
		t.Fatalf("first page: %d hits, next_batch %q", len(res.Hits), res.NextBatch)
	}
	res = en.search(Query{UserID: alice, Term: "needle", Recent: true, Limit: 2, Token: res.NextBatch})
	if len(res.Hits) != 2 || res.NextBatch == "" {
		t.Fatalf("second (last full) page: %d hits, next_batch %q", len(res.Hits), res.NextBatch)
	}
	res = en.search(Query{UserID: alice, Term: "needle", Recent: true, Limit: 2, Token: res.NextBatch})
	if len(res.Hits) != 0 || res.NextBatch != "" || res.Count != 4 {
		t.Fatalf("third page: %d hits, count %d, next_batch %q", len(res.Hits), res.Count, res.NextBatch)
	}
}
