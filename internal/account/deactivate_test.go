package account_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

func errcode(err error) string {
	var me *matrixerr.Error
	if errors.As(err, &me) {
		return me.Code
	}
	return ""
}

// TestDeactivateClosesEveryWayIn: after Deactivate the devices are gone, a
// login token minted before it cannot start a session, no new one can be
// minted, and the record stays (deactivated, profile cleared, erase
// remembered with its position, account data gone) so the name cannot be
// created again. Without erase, nothing is recorded and the account data
// stays.
func TestDeactivateClosesEveryWayIn(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "hearth.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	a := account.New(db, "test.local")
	if err := a.Create(ctx, "owner", "pw", true); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Login(ctx, "owner", "DEV1", "", false); err != nil {
		t.Fatal(err)
	}
	early, err := a.CreateLoginToken(ctx, "owner", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	lp, err := a.RedeemLoginToken(ctx, early)
	if err != nil || lp != "owner" {
		t.Fatalf("redeem before deactivation: %q %v", lp, err)
	}

	if err := a.PutAccountData(ctx, "owner", "", "m.secret", []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := a.Create(ctx, "keeper", "pw", false); err != nil {
		t.Fatal(err)
	}
	if err := a.PutAccountData(ctx, "keeper", "", "m.kept", []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Deactivate(ctx, "keeper", false); err != nil {
		t.Fatal(err)
	}
	if _, erased := a.ErasedAt("@keeper:test.local"); erased {
		t.Error("deactivation without erase recorded an erasure")
	}
	if _, err := a.AccountData("keeper", "", "m.kept"); err != nil {
		t.Errorf("account data of a user who did not ask for erasure: %v", err)
	}

	devices, err := a.Deactivate(ctx, "owner", true)
	if err != nil || len(devices) != 1 || devices[0] != "DEV1" {
		t.Fatalf("Deactivate: %v %v, want [DEV1]", devices, err)
	}
	// The token was redeemed before; the session it would start is refused.
	if _, err := a.Login(ctx, lp, "", "", false); errcode(err) != "M_USER_DEACTIVATED" {
		t.Errorf("login after deactivation: %v, want M_USER_DEACTIVATED", err)
	}
	if _, err := a.CreateLoginToken(ctx, "owner", time.Minute); errcode(err) != "M_USER_DEACTIVATED" {
		t.Errorf("new login token: %v, want M_USER_DEACTIVATED", err)
	}
	if _, err := a.CheckPassword("owner", "pw"); errcode(err) != "M_USER_DEACTIVATED" {
		t.Errorf("password: %v, want M_USER_DEACTIVATED", err)
	}
	if devs, _ := a.Devices("owner"); len(devs) != 0 {
		t.Errorf("devices left: %v", devs)
	}
	u, _ := a.Get("owner")
	if u == nil || !u.Deactivated || !u.Erased || u.PasswordHash != "" || u.DisplayName != "" {
		t.Errorf("record after deactivation: %+v", u)
	}
	if pos, erased := a.ErasedAt("@owner:test.local"); !erased || pos == 0 {
		t.Errorf("ErasedAt: %d %v", pos, erased)
	}
	if _, err := a.AccountData("owner", "", "m.secret"); errcode(err) != "M_NOT_FOUND" {
		t.Errorf("account data after erasure: %v, want it gone", err)
	}
	if err := a.Create(ctx, "owner", "pw2", false); errcode(err) != "M_USER_IN_USE" {
		t.Errorf("re-create: %v, want M_USER_IN_USE", err)
	}
}
