package push

import (
	"bytes"
	"context"
	"testing"

	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/store"
)

// TestRepairStoredRuleJSON: m.push_rules account data stored by a server
// that wrote highlight tweaks as {"value": null} is rewritten in the
// spec's form when the service starts, and a change log entry makes
// clients fetch it again; data already right is left alone.
func TestRepairStoredRuleJSON(t *testing.T) {
	e := openEnv(t, t.TempDir())
	defer e.db.Close()
	ctx := context.Background()
	r := NewRules(e.db)
	alice, bob := user("alice"), user("bob")
	for _, u := range []string{alice, bob} {
		if err := r.SetEnabled(ctx, u, "override", ".m.rule.is_room_mention", false); err != nil {
			t.Fatal(err)
		}
	}
	key := func(u string) []byte { return store.Key(localpart(u), "", "m.push_rules") }
	read := func(u string) (b []byte) {
		e.db.View(func(tx *store.Tx) error { b = bytes.Clone(tx.Get(store.AccountData, key(u))); return nil })
		return b
	}
	bobBefore := read(bob)
	// What the old encoding stored for alice.
	old := bytes.ReplaceAll(read(alice), []byte(`{"set_tweak":"highlight"}`), []byte(`{"set_tweak":"highlight","value":null}`))
	if bytes.Equal(old, read(alice)) {
		t.Fatalf("no highlight tweak in the stored rules: %s", old)
	}
	var pos0 uint64
	if err := e.db.Update(ctx, func(tx *store.Tx) error { pos0 = tx.Pos(); return tx.Put(store.AccountData, key(alice), old) }); err != nil {
		t.Fatal(err)
	}

	if err := r.repairStoredJSON(ctx); err != nil {
		t.Fatal(err)
	}
	if got := read(alice); bytes.Contains(got, []byte(`"value":null`)) || !bytes.Contains(got, []byte(`{"set_tweak":"highlight"}`)) {
		t.Errorf("alice's m.push_rules after the repair: %s", got)
	}
	if !bytes.Equal(read(bob), bobBefore) {
		t.Errorf("bob's m.push_rules, already right, was rewritten")
	}
	var changed []string
	e.db.View(func(tx *store.Tx) error {
		return tx.ChangesSince(pos0, tx.Pos(), func(_ uint64, c store.Change) error {
			changed = append(changed, c.Localpart+" "+c.Key)
			return nil
		})
	})
	if len(changed) != 1 || changed[0] != "alice m.push_rules" {
		t.Errorf("changes logged by the repair: %v, want alice's m.push_rules once", changed)
	}
	// The rules themselves are unchanged.
	rs, err := r.Ruleset(alice)
	if err != nil {
		t.Fatal(err)
	}
	for _, rule := range rs.Override {
		if rule.RuleID == ".m.rule.is_room_mention" && rule.Enabled {
			t.Errorf("the repair re-enabled a rule alice disabled")
		}
	}
}

// TestGatewayHighlightTweak: a highlight tweak without a value reaches the
// push gateway as "highlight": true (its meaning), not null.
func TestGatewayHighlightTweak(t *testing.T) {
	actions, err := DecodeActions([]byte(`["notify",{"set_tweak":"sound","value":"default"},{"set_tweak":"highlight"}]`))
	if err != nil {
		t.Fatal(err)
	}
	n := notification(&room.PushEvent{RoomID: "!r:" + testServer}, Result{Actions: actions}, Pusher{}, 1)
	tweaks := n["devices"].([]any)[0].(map[string]any)["tweaks"].(map[string]any)
	if tweaks["highlight"] != true || tweaks["sound"] != "default" {
		t.Errorf("tweaks sent to the gateway: %v", tweaks)
	}
}
