package appservice

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/store"
)

// mapSecrets is an in-memory secret store; the daemon's keyring and file
// stores are tested in daemon.
type mapSecrets map[string]string

func (m mapSecrets) Get(n string) (string, error) {
	v, ok := m[n]
	if !ok {
		return "", errors.New("secret not found")
	}
	return v, nil
}
func (m mapSecrets) Set(n, v string) error { m[n] = v; return nil }
func (m mapSecrets) Remove(n string) error { delete(m, n); return nil }

const testServer = "hearth.test"

func regYAML(id, prefix string, exclusive bool) string {
	return fmt.Sprintf(`id: %s
url: http://127.0.0.1:29318
as_token: as_%s
hs_token: hs_%s
sender_localpart: %sbot
rate_limited: false
receive_ephemeral: true
io.element.msc4190: true
protocols: [tele]
namespaces:
  users:
    - regex: '^@%s_.+:hearth\.test$'
      exclusive: %v
  aliases:
    - regex: '^#%s_.+:hearth\.test$'
      exclusive: %v
`, id, id, id, id, prefix, exclusive, prefix, exclusive)
}

var closers = map[*store.DB]func(){}

func openRegistry(t *testing.T, path string, sec Secrets) (*Registry, *account.Accounts, *store.DB) {
	t.Helper()
	db, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			db.Close()
		}
	})
	closers[db] = func() { closed = true; db.Close() }
	acc := account.New(db, testServer)
	reg, err := Open(db, acc, sec)
	if err != nil {
		t.Fatal(err)
	}
	return reg, acc, db
}

func mustParse(t *testing.T, y string) *Registration {
	t.Helper()
	r, err := Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestParseRegistration(t *testing.T) {
	r := mustParse(t, regYAML("tg", "tg", true))
	if r.ID != "tg" || r.SenderLocalpart != "tgbot" || r.IsRateLimited() || !r.Ephemeral() || !r.MSC4190 || len(r.Protocols) != 1 {
		t.Fatalf("parsed %+v", r)
	}
	if !r.OwnsUser("@tg_123:hearth.test", testServer) || !r.OwnsUser("@tgbot:hearth.test", testServer) || r.OwnsUser("@alice:hearth.test", testServer) {
		t.Fatal("namespace matching")
	}
	soru := mustParse(t, strings.Replace(regYAML("a", "a", true), "receive_ephemeral: true", "de.sorunome.msc2409.push_ephemeral: true", 1))
	if !soru.Ephemeral() {
		t.Fatal("MSC2409's older key is not read")
	}
}

func TestParseRegistrationBadInput(t *testing.T) {
	for name, y := range map[string]string{
		"invalid regex": strings.Replace(regYAML("a", "a", true), `'^@a_.+:hearth\.test$'`, `'^@a_(+'`, 1),
		"no id":         strings.Replace(regYAML("a", "a", true), "id: a\n", "", 1),
		"no as_token":   strings.Replace(regYAML("a", "a", true), "as_token: as_a\n", "", 1),
		"same tokens":   strings.Replace(regYAML("a", "a", true), "hs_token: hs_a", "hs_token: as_a", 1),
		"bad url":       strings.Replace(regYAML("a", "a", true), "http://127.0.0.1:29318", "ftp://x", 1),
		"not yaml":      "id: [",
		"id with \\":    strings.Replace(regYAML("a", "a", true), "id: a\n", `id: 'a\..\x'`+"\n", 1),
		"id with /":     strings.Replace(regYAML("a", "a", true), "id: a\n", "id: a/b\n", 1),
		"id with space": strings.Replace(regYAML("a", "a", true), "id: a\n", "id: 'a b'\n", 1),
	} {
		if _, err := Parse([]byte(y)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	_, err := Parse([]byte(strings.Replace(regYAML("a", "a", true), `'^@a_.+:hearth\.test$'`, `'^@a_(+'`, 1)))
	if !strings.Contains(err.Error(), "namespaces.users[0]: invalid regex") {
		t.Errorf("unclear error: %v", err)
	}
}

func TestRegistryPersistsAndRefuses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hearth.db")
	sec := mapSecrets{}
	reg, acc, db := openRegistry(t, path, sec)
	ctx := context.Background()
	if err := reg.Add(ctx, mustParse(t, regYAML("tg", "tg", true))); err != nil {
		t.Fatal(err)
	}
	if sec[HSTokenSecret("tg")] != "hs_tg" {
		t.Fatal("hs_token not in the secret store")
	}
	if u, _ := acc.Get("tgbot"); u == nil || !u.Service {
		t.Fatalf("sender user not made: %+v", u)
	}
	if err := acc.Create(ctx, "alice", "password", false); err != nil {
		t.Fatal(err)
	}
	refused := map[string]string{
		"duplicate id":        regYAML("tg", "other", true),
		"duplicate token":     strings.NewReplacer("id: dup", "id: dup", "as_token: as_dup", "as_token: as_tg").Replace(regYAML("dup", "dup", true)),
		"hs_token reused":     strings.Replace(regYAML("dup", "dup", true), "hs_token: hs_dup", "hs_token: as_tg", 1),
		"overlapping users":   regYAML("tg2", "tg", true),
		"nested namespace":    strings.Replace(regYAML("tgx", "tg_x", true), `^#tg_x_`, `^#other_`, 1),
		"sender is a person":  strings.Replace(regYAML("al", "al", true), "sender_localpart: albot", "sender_localpart: alice", 1),
		"sender in exclusive": strings.Replace(regYAML("b", "b", true), "sender_localpart: bbot", "sender_localpart: tg_bot", 1),
	}
	for name, y := range refused {
		err := reg.Add(ctx, mustParse(t, y))
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Non-exclusive namespaces may overlap: both appservices are told.
	if err := reg.Add(ctx, mustParse(t, regYAML("watch", "tg", false))); err != nil {
		t.Errorf("non-exclusive namespaces over an exclusive one: %v", err)
	}
	if got := reg.ExclusiveUserOwner("@tg_5:hearth.test"); got != "tg" {
		t.Errorf("exclusive owner %q", got)
	}
	if got := reg.ExclusiveAliasOwner("#tg_x:hearth.test"); got != "tg" {
		t.Errorf("exclusive alias owner %q", got)
	}
	if got := reg.ExclusiveUserOwner("@alice:hearth.test"); got != "" {
		t.Errorf("alice is owned by %q", got)
	}
	if reg.ByToken("as_tg") == nil || reg.ByToken("hs_tg") != nil || reg.ByToken("nope") != nil {
		t.Error("ByToken")
	}

	// Nothing refused was stored; the one added survives a reopen, its
	// as_token only as a hash.
	closers[db]()
	reg2, _, db2 := openRegistry(t, path, sec)
	ids := []string{}
	for _, s := range reg2.List() {
		ids = append(ids, s.ID())
	}
	if strings.Join(ids, ",") != "tg,watch" {
		t.Fatalf("after reopen: %v", ids)
	}
	svc := reg2.Get("tg")
	if svc.Reg.HSToken != "hs_tg" || reg2.ByToken("as_tg") != svc || svc.RateLimited() {
		t.Fatalf("reloaded %+v", svc.Reg)
	}
	db2.View(func(tx *store.Tx) error {
		if v := tx.Get(store.Appservices, []byte("tg")); strings.Contains(string(v), "as_tg") || strings.Contains(string(v), "hs_tg") {
			t.Errorf("token in clear in bbolt: %s", v)
		}
		return nil
	})
	if err := reg2.Remove(ctx, "tg"); err != nil {
		t.Fatal(err)
	}
	if err := reg2.Remove(ctx, "tg"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second remove: %v", err)
	}
	if _, ok := sec[HSTokenSecret("tg")]; ok || reg2.ByToken("as_tg") != nil {
		t.Fatal("removed appservice still known")
	}
}
