package account_test

import (
	"context"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/store"
)

// TestFirstPasswordOnce: the owner made at first start has a generated,
// unused password, which SetFirstPassword replaces exactly once (bcrypt
// stored, the new one checks, the generated one no longer does); a login
// with the generated password, or any password change, ends that; an
// account made otherwise never had it; a refusal changes nothing.
func TestFirstPasswordOnce(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "hearth.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	a := account.New(db, "test.local")

	generated, err := a.CreateOwner(ctx, "owner")
	if err != nil || generated == "" {
		t.Fatalf("create owner: %q %v", generated, err)
	}
	if u, _ := a.Get("owner"); !u.Admin || !u.PasswordGenerated {
		t.Fatalf("owner record %+v", u)
	}
	if err := a.SetFirstPassword(ctx, "owner", "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	u, _ := a.Get("owner")
	if u.PasswordGenerated || bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte("correct horse battery")) != nil {
		t.Fatalf("after the first password: %+v", u)
	}
	if _, err := a.CheckPassword("owner", generated); errcode(err) != "M_FORBIDDEN" {
		t.Fatalf("the generated password still logs in: %v", err)
	}
	if err := a.SetFirstPassword(ctx, "owner", "another one entirely"); errcode(err) != "M_FORBIDDEN" {
		t.Fatalf("second first password: %v", err)
	}
	if _, err := a.CheckPassword("owner", "correct horse battery"); err != nil {
		t.Fatalf("a refused second call changed the password: %v", err)
	}

	// Used: a login with the generated password ends the console's chance.
	generated, _ = a.CreateOwner(ctx, "used")
	if _, err := a.CheckPassword("used", generated); err != nil {
		t.Fatal(err)
	}
	if err := a.SetFirstPassword(ctx, "used", "correct horse battery"); errcode(err) != "M_FORBIDDEN" {
		t.Fatalf("after a login with the generated password: %v", err)
	}
	if _, err := a.CheckPassword("used", generated); err != nil {
		t.Fatalf("the refused call changed the password: %v", err)
	}

	// Changed: any password change ends it too.
	a.CreateOwner(ctx, "changed")
	if _, err := a.SetPassword(ctx, "changed", "chosen by hand", false, ""); err != nil {
		t.Fatal(err)
	}
	if err := a.SetFirstPassword(ctx, "changed", "correct horse battery"); errcode(err) != "M_FORBIDDEN" {
		t.Fatalf("after a password change: %v", err)
	}

	// An account made otherwise (or before this existed) never had it.
	a.Create(ctx, "plain", "pw", true)
	if err := a.SetFirstPassword(ctx, "plain", "correct horse battery"); errcode(err) != "M_FORBIDDEN" {
		t.Fatalf("an ordinary account: %v", err)
	}
	if err := a.SetFirstPassword(ctx, "nobody", "correct horse battery"); errcode(err) != "M_NOT_FOUND" {
		t.Fatalf("no such account: %v", err)
	}
}
