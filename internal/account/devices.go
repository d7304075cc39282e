package account

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// Session is what a successful login or refresh hands the client.
type Session struct {
	UserID       string
	DeviceID     string
	AccessToken  string
	RefreshToken string // empty unless the client asked for one
	ExpiresInMs  int64
	// SessionID is the client session the tokens belong to (Token.Session).
	SessionID string
}

// Login creates (or reuses, if deviceID names an existing device of the
// user) a device and issues tokens for it. Re-using a device ID revokes that
// device's previous tokens, as the spec requires for /login with device_id.
func (a *Accounts) Login(ctx context.Context, localpart, deviceID, displayName string, refresh bool) (*Session, error) {
	defer a.tokens.revoked() // after the commit: it may delete tokens
	if deviceID == "" {
		deviceID = RandomString(8)
	}
	s := &Session{UserID: a.UserID(localpart), DeviceID: deviceID, AccessToken: "hat_" + RandomString(24),
		SessionID: "ses_" + RandomString(16)}
	if refresh {
		s.RefreshToken = "hrt_" + RandomString(24)
		s.ExpiresInMs = a.AccessTokenLifetime.Milliseconds()
	}
	err := a.db.Update(ctx, func(tx *store.Tx) error {
		u, err := GetUser(tx, localpart)
		if err != nil {
			return err
		}
		if u == nil {
			return matrixerr.Forbidden("invalid username or password")
		}
		if u.Deactivated {
			return errDeactivated() // e.g. a login token minted before deactivation
		}
		key := store.Key(localpart, deviceID)
		var dev Device
		if b := tx.Get(store.Devices, key); b != nil {
			if err := json.Unmarshal(b, &dev); err != nil {
				return fmt.Errorf("account: decode device: %w", err)
			}
			if err := deleteTokensWhere(tx, func(t Token) bool { return t.Localpart == localpart && t.DeviceID == deviceID }); err != nil {
				return err
			}
		} else {
			dev = Device{ID: deviceID, DisplayName: displayName}
		}
		if displayName != "" {
			dev.DisplayName = displayName
		}
		dev.LastSeenTS = time.Now().UnixMilli()
		if err := putJSON(tx, store.Devices, key, dev); err != nil {
			return err
		}
		return a.putTokens(tx, localpart, deviceID, s)
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (a *Accounts) putTokens(tx *store.Tx, localpart, deviceID string, s *Session) error {
	access := Token{Localpart: localpart, DeviceID: deviceID, Session: s.SessionID}
	if s.RefreshToken != "" {
		access.ExpiresTS = time.Now().Add(a.AccessTokenLifetime).UnixMilli()
		rt := Token{Localpart: localpart, DeviceID: deviceID, Refresh: true, Pair: hex.EncodeToString(tokenKey(s.AccessToken)),
			Session: s.SessionID}
		if err := putJSON(tx, store.Tokens, tokenKey(s.RefreshToken), rt); err != nil {
			return err
		}
	}
	return putJSON(tx, store.Tokens, tokenKey(s.AccessToken), access)
}

// Authenticate resolves an access token. Expired tokens are M_UNKNOWN_TOKEN
// with soft_logout, so the client refreshes instead of dropping its session.
func (a *Accounts) Authenticate(token string) (*Token, error) {
	t, found := a.tokens.get(token) // tokencache.go
	epoch := a.tokens.epoch.Load()
	if found {
		return checkAccessToken(t, true)
	}
	err := a.db.View(func(tx *store.Tx) error {
		b := tx.Get(store.Tokens, tokenKey(token))
		if b == nil {
			return nil
		}
		found = true
		return json.Unmarshal(b, &t)
	})
	if err != nil {
		return nil, fmt.Errorf("account: read token: %w", err)
	}
	if found && !t.Refresh && !t.Login {
		a.tokens.put(token, t, epoch)
	}
	return checkAccessToken(t, found)
}

// checkAccessToken is Authenticate's answer for what the token resolved to.
func checkAccessToken(t Token, found bool) (*Token, error) {
	if !found || t.Refresh || t.Login {
		return nil, matrixerr.UnknownToken("unknown access token")
	}
	if t.ExpiresTS != 0 && time.Now().UnixMilli() >= t.ExpiresTS {
		e := matrixerr.UnknownToken("access token has expired")
		e.Extra = map[string]any{"soft_logout": true}
		return nil, e
	}
	return &t, nil
}

// Refresh swaps a refresh token for a new access/refresh pair and revokes
// the old pair (spec v1.3 §"Refreshing access tokens").
func (a *Accounts) Refresh(ctx context.Context, refreshToken string) (*Session, error) {
	defer a.tokens.revoked() // after the commit: it may delete tokens
	var s *Session
	err := a.db.Update(ctx, func(tx *store.Tx) error {
		key := tokenKey(refreshToken)
		b := tx.Get(store.Tokens, key)
		var t Token
		if b == nil || json.Unmarshal(b, &t) != nil || !t.Refresh || t.Login {
			return matrixerr.UnknownToken("unknown refresh token")
		}
		if err := tx.Delete(store.Tokens, key); err != nil {
			return err
		}
		pair, err := hex.DecodeString(t.Pair)
		if err != nil {
			return fmt.Errorf("account: refresh token's pair: %w", err)
		}
		if err := tx.Delete(store.Tokens, pair); err != nil {
			return err
		}
		s = &Session{UserID: a.UserID(t.Localpart), DeviceID: t.DeviceID,
			AccessToken: "hat_" + RandomString(24), RefreshToken: "hrt_" + RandomString(24),
			ExpiresInMs: a.AccessTokenLifetime.Milliseconds(), SessionID: t.Session}
		return a.putTokens(tx, t.Localpart, t.DeviceID, s)
	})
	return s, err
}

// Logout revokes the tokens of one device and deletes it.
func (a *Accounts) Logout(ctx context.Context, localpart, deviceID string) error {
	return a.DeleteDevices(ctx, localpart, []string{deviceID})
}

// LogoutAll revokes every token and device of the user.
func (a *Accounts) LogoutAll(ctx context.Context, localpart string) error {
	devs, err := a.Devices(localpart)
	if err != nil {
		return err
	}
	ids := make([]string, len(devs))
	for i, d := range devs {
		ids[i] = d.ID
	}
	return a.DeleteDevices(ctx, localpart, ids)
}

// DeleteDevices removes devices and their tokens; unknown IDs are ignored,
// as the spec's /delete_devices allows.
func (a *Accounts) DeleteDevices(ctx context.Context, localpart string, ids []string) error {
	defer a.tokens.revoked() // after the commit: it may delete tokens
	drop := make(map[string]bool, len(ids))
	for _, id := range ids {
		drop[id] = true
	}
	return a.db.Update(ctx, func(tx *store.Tx) error {
		for id := range drop {
			if err := tx.Delete(store.Devices, store.Key(localpart, id)); err != nil {
				return err
			}
		}
		return deleteTokensWhere(tx, func(t Token) bool { return t.Localpart == localpart && drop[t.DeviceID] })
	})
}

// deleteTokensWhere scans the token bucket. Tokens are keyed by hash, so
// there is no index by user; a personal server has a handful of tokens.
func deleteTokensWhere(tx *store.Tx, match func(Token) bool) error {
	var doomed [][]byte
	c := tx.Cursor(store.Tokens)
	for k, v := c.First(); k != nil; k, v = c.Next() {
		var t Token
		if json.Unmarshal(v, &t) == nil && match(t) {
			doomed = append(doomed, append([]byte(nil), k...))
		}
	}
	for _, k := range doomed {
		if err := tx.Delete(store.Tokens, k); err != nil {
			return err
		}
	}
	return nil
}

// Devices lists a user's devices.
func (a *Accounts) Devices(localpart string) ([]Device, error) {
	out := []Device{}
	err := a.db.View(func(tx *store.Tx) error {
		prefix := store.Key(localpart, "")
		c := tx.Cursor(store.Devices)
		for k, v := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
			var d Device
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("account: decode device: %w", err)
			}
			out = append(out, d)
		}
		return nil
	})
	return out, err
}

// Device returns one device, or M_NOT_FOUND.
func (a *Accounts) Device(localpart, id string) (*Device, error) {
	var d *Device
	err := a.db.View(func(tx *store.Tx) error {
		b := tx.Get(store.Devices, store.Key(localpart, id))
		if b == nil {
			return matrixerr.NotFound("no such device")
		}
		d = new(Device)
		return json.Unmarshal(b, d)
	})
	return d, err
}

// RenameDevice sets a device's display name.
func (a *Accounts) RenameDevice(ctx context.Context, localpart, id, name string) error {
	return a.db.Update(ctx, func(tx *store.Tx) error {
		key := store.Key(localpart, id)
		b := tx.Get(store.Devices, key)
		if b == nil {
			return matrixerr.NotFound("no such device")
		}
		var d Device
		if err := json.Unmarshal(b, &d); err != nil {
			return fmt.Errorf("account: decode device: %w", err)
		}
		d.DisplayName = name
		return putJSON(tx, store.Devices, key, d)
	})
}

func hasPrefix(b, prefix []byte) bool {
	return len(b) >= len(prefix) && string(b[:len(prefix)]) == string(prefix)
}

// CreateLoginToken issues a single-use m.login.token for the user, valid
// for ttl (spec v1.7 /login/get_token, and the daemon's "open client" link).
func (a *Accounts) CreateLoginToken(ctx context.Context, localpart string, ttl time.Duration) (string, error) {
	tok := "hlt_" + RandomString(24)
	t := Token{Localpart: localpart, Login: true, ExpiresTS: time.Now().Add(ttl).UnixMilli()}
	err := a.db.Update(ctx, func(tx *store.Tx) error {
		if u, err := GetUser(tx, localpart); err != nil {
			return err
		} else if u != nil && u.Deactivated {
			return errDeactivated()
		}
		return putJSON(tx, store.Tokens, tokenKey(tok), t)
	})
	return tok, err
}

// RedeemLoginToken consumes a login token and returns its user.
func (a *Accounts) RedeemLoginToken(ctx context.Context, token string) (string, error) {
	var localpart string
	err := a.db.Update(ctx, func(tx *store.Tx) error {
		key := tokenKey(token)
		b := tx.Get(store.Tokens, key)
		var t Token
		if b == nil || json.Unmarshal(b, &t) != nil || !t.Login {
			return matrixerr.Forbidden("invalid login token")
		}
		if err := tx.Delete(store.Tokens, key); err != nil {
			return err
		}
		if time.Now().UnixMilli() >= t.ExpiresTS {
			return matrixerr.Forbidden("login token has expired")
		}
		localpart = t.Localpart
		return nil
	})
	return localpart, err
}
