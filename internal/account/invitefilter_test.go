package account_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/store"
)

// TestInviteRulesAction: MSC4155's evaluation order and globs, in the
// cases the conformance suite (Complement TestInviteFiltering) sets up.
func TestInviteRulesAction(t *testing.T) {
	const bob, evilBob, evilAlice = "@bob:hs2", "@evil_bob:hs2", "@user-3:hs1"
	for _, c := range []struct {
		name, config string
		inviter      string
		want         account.InviteAction
	}{
		{"no rules", `{}`, bob, account.InviteAllow},
		{"blocked user", `{"blocked_users":["@bob:hs2"]}`, bob, account.InviteBlock},
		{"another user", `{"blocked_users":["@bob:hs2"]}`, evilBob, account.InviteAllow},
		{"ignored user", `{"ignored_users":["@bob:hs2"]}`, bob, account.InviteIgnore},
		{"blocked server", `{"blocked_servers":["hs2"]}`, evilBob, account.InviteBlock},
		{"ignored server", `{"ignored_servers":["hs2"]}`, bob, account.InviteIgnore},
		{"server glob", `{"blocked_servers":["hs*"]}`, evilAlice, account.InviteBlock},
		{"server glob, other server", `{"blocked_servers":["hs?"]}`, "@x:example.org", account.InviteAllow},
		{"server names ignore case", `{"blocked_servers":["HS2"]}`, bob, account.InviteBlock},
		{"user glob", `{"blocked_users":["@user-?*"]}`, evilAlice, account.InviteBlock},
		{"user glob needs one char", `{"blocked_users":["@user-?*"]}`, "@user-", account.InviteAllow},
		{"user glob is whole-string", `{"blocked_users":["@bob"]}`, bob, account.InviteAllow},
		{"user globs keep case", `{"blocked_users":["@BOB:hs2"]}`, bob, account.InviteAllow},
		{"allowed user of a blocked server", `{"allowed_users":["@bob:hs2"],"blocked_servers":["hs2"]}`, bob, account.InviteAllow},
		{"other user of that server", `{"allowed_users":["@bob:hs2"],"blocked_servers":["hs2"]}`, evilBob, account.InviteBlock},
		{"blocked user of an allowed server", `{"blocked_users":["@evil_bob:hs2"],"allowed_servers":["hs2"]}`, evilBob, account.InviteBlock},
		{"allowed beats ignored and blocked", `{"ignored_users":["@bob:hs2"],"blocked_users":["@evil_bob:hs2"],"allowed_users":["@bob:hs2","@evil_bob:hs2"]}`, evilBob, account.InviteAllow},
		{"ignored beats blocked", `{"ignored_servers":["*"],"blocked_servers":["*"]}`, bob, account.InviteIgnore},
		{"null fields", `{"allowed_users":null,"ignored_users":null,"blocked_users":null,"allowed_servers":null,"ignored_servers":null,"blocked_servers":null}`, bob, account.InviteAllow},
		{"fields of the wrong type", `{"blocked_users":"@bob:hs2","blocked_servers":[1,"hs3"]}`, bob, account.InviteAllow},
		{"not an object", `["@bob:hs2"]`, bob, account.InviteAllow},
		{"star never fails", `{"blocked_servers":["*"]}`, "@a:b", account.InviteBlock},
		{"many stars", `{"blocked_users":["*a*a*a*a*a*a*a*a*b"]}`, "@aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:x", account.InviteAllow},
	} {
		if got := account.ParseInviteRules(json.RawMessage(c.config), nil).Action(c.inviter); got != c.want {
			t.Errorf("%s: %s invited under %s: %v, want %v", c.name, c.inviter, c.config, got, c.want)
		}
	}
	// The spec's m.invite_permission_config (v1.18) blocks everyone.
	if got := account.ParseInviteRules(nil, json.RawMessage(`{"default_action":"block"}`)).Action(bob); got != account.InviteBlock {
		t.Errorf("default_action block: %v, want block", got)
	}
	if got := account.ParseInviteRules(nil, json.RawMessage(`{"default_action":"something"}`)).Action(bob); got != account.InviteAllow {
		t.Errorf("unknown default_action: %v, want allow", got)
	}
}

// TestInviteRulesStored: the rules are read from the account data a
// client writes, and writing {} (how a client removes account data)
// allows everyone again.
func TestInviteRulesStored(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "hearth.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	a := account.New(db, "test.local")
	ctx := context.Background()
	put := func(typ, content string) {
		t.Helper()
		if err := a.PutAccountData(ctx, "alice", "", typ, json.RawMessage(content)); err != nil {
			t.Fatal(err)
		}
	}
	action := func() account.InviteAction {
		t.Helper()
		r, err := a.InviteRules("alice")
		if err != nil {
			t.Fatal(err)
		}
		return r.Action("@bob:hs2")
	}
	if got := action(); got != account.InviteAllow {
		t.Errorf("no config: %v", got)
	}
	put(account.InvitePermissionConfig, `{"blocked_servers":["hs2"]}`)
	if got := action(); got != account.InviteBlock {
		t.Errorf("blocked server: %v", got)
	}
	put(account.InvitePermissionConfig, `{}`)
	if got := action(); got != account.InviteAllow {
		t.Errorf("config removed: %v", got)
	}
	put(account.InvitePermissionConfigStable, `{"default_action":"block"}`)
	if got := action(); got != account.InviteBlock {
		t.Errorf("m.invite_permission_config block: %v", got)
	}
}
