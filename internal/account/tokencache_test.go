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

// TestRevokedTokenRefusedOnceCached: Authenticate keeps the tokens it found
// (tokencache.go); every way a token is revoked — logout, deleting the
// device, logging in again with the same device ID, a password change that
// logs out the other devices, deactivation, a refresh (the old access
// token), and any of these through a second Accounts over the same
// database — refuses it as soon as the call has returned, although it was
// answered from the cache just before. An expired token is refused from
// the cache as from the database, with soft_logout.
func TestRevokedTokenRefusedOnceCached(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "hearth.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	a := account.New(db, "test.local")
	other := account.New(db, "test.local") // as the daemon's admin paths make their own
	if err := a.Create(ctx, "alice", "pw", false); err != nil {
		t.Fatal(err)
	}
	login := func(device string, refresh bool) *account.Session {
		t.Helper()
		s, err := a.Login(ctx, "alice", device, "", refresh)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 { // the second answer comes from the cache
			if _, err := a.Authenticate(s.AccessToken); err != nil {
				t.Fatalf("fresh token refused: %v", err)
			}
		}
		return s
	}
	refused := func(what, token string) {
		t.Helper()
		if _, err := a.Authenticate(token); errcode(err) != "M_UNKNOWN_TOKEN" {
			t.Errorf("%s: token still accepted (%v)", what, err)
		}
	}

	s := login("D1", false)
	if err := a.Logout(ctx, "alice", "D1"); err != nil {
		t.Fatal(err)
	}
	refused("logout", s.AccessToken)

	s = login("D2", false)
	if err := other.DeleteDevices(ctx, "alice", []string{"D2"}); err != nil {
		t.Fatal(err)
	}
	refused("device deleted through another Accounts", s.AccessToken)

	s = login("D3", false)
	login("D3", false)
	refused("login again with the same device ID", s.AccessToken)

	s = login("D4", false)
	keep := login("KEEP", false)
	if _, err := a.SetPassword(ctx, "alice", "pw2", true, "KEEP"); err != nil {
		t.Fatal(err)
	}
	refused("password change logging out the others", s.AccessToken)
	if _, err := a.Authenticate(keep.AccessToken); err != nil {
		t.Errorf("the kept device's token was refused: %v", err)
	}

	s = login("D5", true)
	if _, err := a.Refresh(ctx, s.RefreshToken); err != nil {
		t.Fatal(err)
	}
	refused("refreshed", s.AccessToken)

	a.AccessTokenLifetime = -time.Second // issued already expired
	s = login0(t, a, "D6")
	for range 2 {
		_, err := a.Authenticate(s.AccessToken)
		var extra map[string]any
		if me := asMatrixErr(err); me != nil {
			extra = me.Extra
		}
		if errcode(err) != "M_UNKNOWN_TOKEN" || extra["soft_logout"] != true {
			t.Errorf("expired token: %v (extra %v)", err, extra)
		}
	}
	a.AccessTokenLifetime = time.Hour

	s = login("D7", false)
	if _, err := a.Deactivate(ctx, "alice", false); err != nil {
		t.Fatal(err)
	}
	refused("deactivated", s.AccessToken)
	refused("deactivated (kept device)", keep.AccessToken)
}

// login0 logs in with a refresh token and no check of the access token.
func login0(t *testing.T, a *account.Accounts, device string) *account.Session {
	t.Helper()
	s, err := a.Login(context.Background(), "alice", device, "", true)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func asMatrixErr(err error) *matrixerr.Error {
	var me *matrixerr.Error
	if errors.As(err, &me) {
		return me
	}
	return nil
}
