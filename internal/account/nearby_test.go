package account_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/store"
)

// TestNearbyFlag: a new account is not announced to people nearby; the
// opt-in is stored on the record and survives reopening the store; the
// hook fires on opt-in and display name changes; deactivation clears it;
// an unknown account is M_NOT_FOUND and changes nothing.
func TestNearbyFlag(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hearth.db")
	db, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a := account.New(db, "test.local")
	calls := 0
	a.OnProfileChange(func() { calls++ })
	for _, n := range []string{"anna", "bob", "carl"} {
		if err := a.Create(ctx, n, "pw", false); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := a.Nearby(); len(got) != 0 {
		t.Fatalf("new accounts are nearby by default: %v", got)
	}
	if err := a.SetNearby(ctx, "anna", true); err != nil {
		t.Fatal(err)
	}
	if err := a.SetNearby(ctx, "bob", true); err != nil {
		t.Fatal(err)
	}
	if err := a.SetNearby(ctx, "nobody", true); errcode(err) != "M_NOT_FOUND" {
		t.Fatalf("unknown account: %v", err)
	}
	name := "Anna Bell"
	if err := a.SetProfile(ctx, "anna", &name, nil); err != nil {
		t.Fatal(err)
	}
	if calls != 3 {
		t.Fatalf("profile hook called %d times, want 3", calls)
	}
	if _, err := a.Deactivate(ctx, "bob", false); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db, err = store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a = account.New(db, "test.local")
	got, err := a.Nearby()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Localpart != "anna" || got[0].DisplayName != "Anna Bell" {
		t.Fatalf("nearby after reopen = %+v, want only anna", got)
	}
	if u, _ := a.Get("bob"); u.Nearby {
		t.Fatal("a deactivated account stays announced")
	}
	if err := a.SetNearby(ctx, "bob", true); err == nil {
		t.Fatal("a deactivated account opted in")
	}
	if err := a.SetNearby(ctx, "anna", false); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.Nearby(); len(got) != 0 {
		t.Fatalf("opted out, still nearby: %v", got)
	}
}
