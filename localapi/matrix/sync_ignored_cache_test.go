package matrix

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/store"
)

// ignoredCache keeps a list read in a snapshot past the response's own
// position (a commit landed during the build) and uses it for the next
// span, which reaches that position, when the span holds no account data
// change; a span that does hold one, or that ends before the position
// the list was read at, reads the list again. The store's list is
// rewritten behind the cache's back (no change-log entry) to tell a
// cached answer from a read one.
func TestIgnoredCacheKnownPastTheResponse(t *testing.T) {
	ctx := context.Background()
	st, err := room.Open(room.Options{Path: filepath.Join(t.TempDir(), "hearth.db"),
		Engine: room.Config{ServerName: "test"}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.DB.Close()
	accounts := account.New(st.DB, "test")
	list := func(users ...string) []byte {
		b := []byte(`{"ignored_users":{`)
		for i, u := range users {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `"`+u+`":{}`...)
		}
		return append(b, "}}"...)
	}
	// quietly rewrites the stored list without a change-log entry.
	quietly := func(users ...string) {
		if err := st.DB.Update(ctx, func(tx *store.Tx) error {
			return tx.Put(store.AccountData, store.Key("alice", "", "m.ignored_user_list"), list(users...))
		}); err != nil {
			t.Fatal(err)
		}
	}
	// move takes a stream position with a change of another kind.
	move := func() uint64 {
		var pos uint64
		if err := st.DB.Update(ctx, func(tx *store.Tx) error {
			pos, err = tx.AppendChange(store.Change{Kind: room.ChangeReceipt, RoomID: "!r:test"})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return pos
	}
	pos := func() uint64 { p, _ := st.Engine.Pos(); return p }
	var c ignoredCache
	sync := func(since, now uint64) map[string]bool {
		kinds, err := st.Engine.SpanChangeKinds(since, now)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]bool
		st.DB.View(func(tx *store.Tx) error { got = c.in("alice", since, now, kinds)(tx); return nil })
		return got
	}

	if err := accounts.PutAccountData(ctx, "alice", "", "m.ignored_user_list", list("@bob:test")); err != nil {
		t.Fatal(err)
	}
	start := pos()
	now := move()
	later := move() // committed after the response's position, before its build
	if got := sync(start, now); !got["@bob:test"] {
		t.Fatalf("first read: %v, want bob", got)
	}
	quietly("@carol:test")
	end := move()
	if got := sync(now, end); !got["@bob:test"] || got["@carol:test"] {
		t.Errorf("span (%d, %d] reaching the read at %d: %v, want the cached list (bob)", now, end, later, got)
	}

	// A span holding an account data change reads again.
	if err := accounts.PutAccountData(ctx, "alice", "", "m.ignored_user_list", list("@dave:test")); err != nil {
		t.Fatal(err)
	}
	next := pos()
	if got := sync(end, next); !got["@dave:test"] {
		t.Errorf("span with an account data change: %v, want the list read again (dave)", got)
	}

	// A list read at a position past the span's end is not used for it.
	a := move()
	b := move()
	quietly("@erin:test")
	if got := sync(a, b); !got["@erin:test"] {
		t.Fatalf("read at %d: %v, want erin", pos(), got)
	}
	quietly("@frank:test")
	if got := sync(next, a); !got["@frank:test"] {
		t.Errorf("span (%d, %d] ending before the read at %d: %v, want the list read again (frank)", next, a, b, got)
	}
}
