package account_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/store"
)

// TestServiceAccountAndDevice: a service account is made once, with no
// password (nothing logs in as it), and a person's account of that name
// is never taken over; a daemon device is listed among the user's
// devices, has no token, and is made once.
func TestServiceAccountAndDevice(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "hearth.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	a := account.New(db, "test.local")
	for range 2 {
		if ok, err := a.EnsureService(ctx, "echo", "Echo test"); err != nil || !ok {
			t.Fatalf("EnsureService(echo) = %v, %v", ok, err)
		}
	}
	if _, err := a.CheckPassword("echo", ""); err == nil {
		t.Fatal("the service account accepts an empty password")
	}
	if err := a.Create(ctx, "echo2", "pw", false); err != nil {
		t.Fatal(err)
	}
	if ok, err := a.EnsureService(ctx, "echo2", "Echo test"); err != nil || ok {
		t.Fatalf("a person's account was taken as a service account: %v, %v", ok, err)
	}
	if u, _ := a.Get("echo2"); u.Service || u.PasswordHash == "" {
		t.Fatalf("the person's account changed: %+v", u)
	}

	if err := a.Create(ctx, "owner", "pw", true); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := a.EnsureDevice(ctx, "owner", "HEARTHVOICEMAIL", "Hearth voicemail"); err != nil {
			t.Fatal(err)
		}
	}
	devs, err := a.Devices("owner")
	if err != nil || len(devs) != 1 || devs[0].ID != "HEARTHVOICEMAIL" || devs[0].DisplayName != "Hearth voicemail" {
		t.Fatalf("devices %+v, %v", devs, err)
	}
	if err := a.EnsureDevice(ctx, "nobody", "X", "x"); errcode(err) != "M_NOT_FOUND" {
		t.Fatalf("device for an unknown user: %v", err)
	}
}
