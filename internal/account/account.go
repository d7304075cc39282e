// Package account owns local users, their devices and access tokens,
// passwords, profiles, account data and stored filters (Client-Server API
// §5 "Client Authentication", §"Profiles", §"Client Config", §"Filtering").
// It never touches room data; profile changes that must reach rooms are
// announced by the caller through the room engine.
package account

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// User is a local account as stored.
type User struct {
	Localpart    string `json:"localpart"`
	PasswordHash string `json:"password_hash,omitempty"`
	DisplayName  string `json:"displayname,omitempty"`
	AvatarURL    string `json:"avatar_url,omitempty"`
	Admin        bool   `json:"admin,omitempty"`
	Deactivated  bool   `json:"deactivated,omitempty"`
	CreatedTS    int64  `json:"created_ts"`
	// Presence is the last state the user set (online, unavailable, offline).
	Presence     string `json:"presence,omitempty"`
	StatusMsg    string `json:"status_msg,omitempty"`
	LastActiveTS int64  `json:"last_active_ts,omitempty"`

	// Erased is set when the user deactivated with erase: true, at stream
	// position ErasedPos.
	Erased    bool   `json:"erased,omitempty"`
	ErasedPos uint64 `json:"erased_pos,omitempty"`

	// Nearby: announced with its display name to people on the local
	// network (nearby.go). Absent means off.
	Nearby bool `json:"nearby,omitempty"`

	// Service marks an account the daemon itself acts as (the echo test
	// user, service.go): no password, never a person's.
	Service bool `json:"service,omitempty"`

	// PasswordGenerated: the password is the random one Hearth made for
	// the owner at first start (CreateOwner) and nobody has logged in with
	// it or changed it since; only then may the web console set the first
	// password (owner.go). Absent means false, as for every older record.
	PasswordGenerated bool `json:"password_generated,omitempty"`
}

// Device is one login session of a user.
type Device struct {
	ID          string `json:"device_id"`
	DisplayName string `json:"display_name,omitempty"`
	LastSeenIP  string `json:"last_seen_ip,omitempty"`
	LastSeenTS  int64  `json:"last_seen_ts,omitempty"`
}

// Token is what an access or refresh token resolves to. Tokens are stored
// under their SHA-256, never in clear.
type Token struct {
	Localpart string `json:"localpart"`
	DeviceID  string `json:"device_id"`
	Refresh   bool   `json:"refresh,omitempty"`
	Login     bool   `json:"login,omitempty"` // a single-use m.login.token
	// ExpiresTS is 0 for tokens that never expire.
	ExpiresTS int64 `json:"expires_ts,omitempty"`
	// Pair is the hex SHA-256 of the matching access token (on a refresh
	// token) so that refreshing revokes the old access token.
	Pair string `json:"pair,omitempty"`
	// Session names the client session the token belongs to: one per
	// login, kept across refreshes. Transaction IDs are scoped to it
	// (Client-Server API §"Transaction identifiers"), so two logins on
	// one device ID do not share them. Empty on tokens issued before
	// sessions existed; TxnScope then falls back to the device.
	Session string `json:"session,omitempty"`
}

// TxnScope is what the token's transaction IDs are scoped to: its client
// session, or for older tokens its device.
func (t *Token) TxnScope() string {
	if t.Session != "" {
		return t.Session
	}
	return t.DeviceID
}

// Accounts is the account service over the store.
type Accounts struct {
	db         *store.DB
	serverName string
	// AccessTokenLifetime, when non-zero, makes tokens issued with a refresh
	// token expire (spec v1.3 refresh tokens).
	AccessTokenLifetime time.Duration
	hooks               profileHooks
	tokens              *tokenCache // Authenticate's answers (tokencache.go)
}

// New returns the account service for serverName.
func New(db *store.DB, serverName string) *Accounts {
	return &Accounts{db: db, serverName: serverName, AccessTokenLifetime: 5 * time.Minute, tokens: tokenCacheFor(db)}
}

// ServerName is the domain of local user IDs.
func (a *Accounts) ServerName() string { return a.serverName }

// UserID returns the full Matrix ID of a localpart.
func (a *Accounts) UserID(localpart string) string { return "@" + localpart + ":" + a.serverName }

// Localpart returns the localpart of a local user ID, or "" if not local.
func (a *Accounts) Localpart(userID string) string {
	if !strings.HasPrefix(userID, "@") {
		return ""
	}
	lp, server, ok := strings.Cut(userID[1:], ":")
	if !ok || server != a.serverName {
		return ""
	}
	return lp
}

// localpartRE is the spec's user ID grammar for new registrations
// (Appendices §"User Identifiers"): lowercase, digits and ._=-/+.
var localpartRE = regexp.MustCompile(`^[a-z0-9._=\-/+]+$`)

// ValidateLocalpart checks a localpart offered for registration.
func (a *Accounts) ValidateLocalpart(lp string) error {
	if lp == "" || !localpartRE.MatchString(lp) {
		return matrixerr.InvalidUsername("user ID may only contain a-z, 0-9, . _ = - / +")
	}
	if len(a.UserID(lp)) > 255 {
		return matrixerr.InvalidUsername("user ID is longer than 255 bytes")
	}
	return nil
}

// Create makes a new account. An empty password makes an account that can
// only log in by token.
func (a *Accounts) Create(ctx context.Context, localpart, password string, admin bool) error {
	if err := a.ValidateLocalpart(localpart); err != nil {
		return err
	}
	hash, err := hashPassword(password)
	if err != nil {
		return err
	}
	u := User{Localpart: localpart, PasswordHash: hash, Admin: admin, CreatedTS: time.Now().UnixMilli(), DisplayName: localpart}
	return a.db.Update(ctx, func(tx *store.Tx) error {
		if tx.Get(store.Users, []byte(localpart)) != nil {
			return matrixerr.UserInUse("that user ID is taken")
		}
		return putJSON(tx, store.Users, []byte(localpart), u)
	})
}

// Get returns the stored user, or nil if there is none.
func (a *Accounts) Get(localpart string) (*User, error) {
	var u *User
	err := a.db.View(func(tx *store.Tx) error {
		var err error
		u, err = GetUser(tx, localpart)
		return err
	})
	return u, err
}

// GetUser reads a user inside a transaction; nil if absent.
func GetUser(tx *store.Tx, localpart string) (*User, error) {
	b := tx.Get(store.Users, []byte(localpart))
	if b == nil {
		return nil, nil
	}
	var u User
	if err := json.Unmarshal(b, &u); err != nil {
		return nil, fmt.Errorf("account: decode user %q: %w", localpart, err)
	}
	return &u, nil
}

// List returns every local localpart.
func (a *Accounts) List() ([]User, error) {
	var out []User
	err := a.db.View(func(tx *store.Tx) error {
		c := tx.Cursor(store.Users)
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var u User
			if err := json.Unmarshal(v, &u); err != nil {
				return fmt.Errorf("account: decode user %q: %w", k, err)
			}
			out = append(out, u)
		}
		return nil
	})
	return out, err
}

// modifyUser applies fn to a stored user inside tx and stores the result.
func modifyUser(tx *store.Tx, localpart string, fn func(*User) error) error {
	u, err := GetUser(tx, localpart)
	if err != nil {
		return err
	}
	if u == nil {
		return matrixerr.NotFound("no such user")
	}
	if err := fn(u); err != nil {
		return err
	}
	return putJSON(tx, store.Users, []byte(localpart), u)
}

// SetPassword replaces the password. With logoutOthers every device but
// keepDevice is logged out and deleted, as the spec's logout_devices asks;
// their IDs are returned so the caller can drop what else they own (keys).
func (a *Accounts) SetPassword(ctx context.Context, localpart, password string, logoutOthers bool, keepDevice string) ([]string, error) {
	defer a.tokens.revoked() // after the commit: it may delete tokens
	hash, err := hashPassword(password)
	if err != nil {
		return nil, err
	}
	var dropped []string
	err = a.db.Update(ctx, func(tx *store.Tx) error {
		dropped = nil
		if err := modifyUser(tx, localpart, func(u *User) error {
			u.PasswordHash, u.PasswordGenerated = hash, false
			return nil
		}); err != nil {
			return err
		}
		if !logoutOthers {
			return nil
		}
		prefix := store.Key(localpart, "")
		c := tx.Cursor(store.Devices)
		for k, _ := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, _ = c.Next() {
			if id := string(k[len(prefix):]); id != keepDevice {
				dropped = append(dropped, id)
			}
		}
		for _, id := range dropped {
			if err := tx.Delete(store.Devices, store.Key(localpart, id)); err != nil {
				return err
			}
		}
		return deleteTokensWhere(tx, func(t Token) bool { return t.Localpart == localpart && t.DeviceID != keepDevice })
	})
	return dropped, err
}

// CheckPassword returns the user if the password matches. A wrong password
// and an unknown user give the same error, so logins cannot probe for names.
func (a *Accounts) CheckPassword(localpart, password string) (*User, error) {
	u, err := a.Get(localpart)
	if err != nil {
		return nil, err
	}
	if u == nil || u.PasswordHash == "" {
		// Spend the same time as a real check.
		bcrypt.CompareHashAndPassword(dummyHash(), []byte(password))
		if u != nil && u.Deactivated {
			// The hash went with the account; that the name is taken is
			// public anyway (register/available).
			return nil, errDeactivated()
		}
		return nil, matrixerr.Forbidden("invalid username or password")
	}
	if bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(password)) != nil {
		return nil, matrixerr.Forbidden("invalid username or password")
	}
	if u.Deactivated {
		return nil, errDeactivated()
	}
	if u.PasswordGenerated {
		// Someone knows the generated password after all (the first
		// start's banner): from now on it changes only as any password
		// does, through a Matrix client (owner.go).
		if err := a.passwordUsed(localpart, u.PasswordHash); err != nil {
			return nil, err
		}
		u.PasswordGenerated = false
	}
	return u, nil
}

// dummyHash is made on first use, not at start-up: bcrypt costs ~50 ms.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("not a password"), bcrypt.DefaultCost)
	return h
})

func hashPassword(password string) (string, error) {
	if password == "" {
		return "", nil
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if errors.Is(err, bcrypt.ErrPasswordTooLong) {
		return "", matrixerr.WeakPassword("password is longer than 72 bytes")
	}
	if err != nil {
		return "", fmt.Errorf("account: hash password: %w", err)
	}
	return string(h), nil
}

// RandomString returns n bytes of randomness, URL-safe base64 encoded.
func RandomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func tokenKey(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

func putJSON(tx *store.Tx, bucket, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("account: encode %s: %w", bucket, err)
	}
	return tx.Put(bucket, key, b)
}
