package room

import (
	"context"
	"testing"

	"github.com/hearth-chat/hearth/internal/store"
)

// SpanChangeKinds reports the kinds of the change-log entries in a span
// and nothing else, remembers spans the notifier has reached (asking again
// gives the same answer without a read), and never remembers a span that
// reaches past the notifier: an entry committed later at a position inside
// it must show the next time it is asked.
func TestSpanChangeKinds(t *testing.T) {
	ctx := context.Background()
	e, db := newEngine(t)
	roomID, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	appendChange := func(kind string) {
		t.Helper()
		if err := db.Update(ctx, func(tx *store.Tx) error {
			_, err := tx.AppendChange(store.Change{Kind: kind, Localpart: "alice", Key: "x"})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	pos := func() uint64 { p, _ := e.Pos(); return p }
	kinds := func(from, to uint64) ChangeKinds {
		t.Helper()
		k, err := e.SpanChangeKinds(from, to)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}

	p := pos()
	sendJSON(t, e, alice, roomID, `{"msgtype":"m.text","body":"hi"}`)
	if k := kinds(p, pos()); k.Has("account_data") || !k.Only() {
		t.Errorf("a message alone: kinds %v, want none", k.kinds)
	}
	appendChange("account_data")
	appendChange("keys.devicelist")
	k := kinds(p, pos())
	if !k.Has("account_data") || !k.Has("keys.devicelist") || k.Has("presence") {
		t.Errorf("kinds %v, want account_data and keys.devicelist", k.kinds)
	}
	if !k.Only("account_data", "keys.devicelist") || k.Only("account_data") {
		t.Errorf("Only is wrong for %v", k.kinds)
	}
	if again := kinds(p, pos()); len(again.kinds) != 2 {
		t.Errorf("asked again: %v", again.kinds)
	}

	// A span past the notifier's position: not remembered, so what is
	// committed inside it later shows.
	ahead := pos() + 5
	if k := kinds(pos(), ahead); !k.Only() {
		t.Errorf("span ahead: %v, want none yet", k.kinds)
	}
	from := pos()
	appendChange("presence")
	if k := kinds(from, ahead); !k.Has("presence") {
		t.Errorf("span ahead after a commit inside it: %v lacks presence", k.kinds)
	}

	// The zero value (no span read, an initial sync) holds every kind.
	var zero ChangeKinds
	if !zero.Has("anything") || zero.Only("anything") {
		t.Error("zero ChangeKinds must hold every kind")
	}
}
