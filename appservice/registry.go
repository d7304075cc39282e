package appservice

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/store"
)

// Secrets is where the hs_token of each appservice lives: the daemon's
// secret store (OS keyring or 0600 file), with the signing key. Hearth
// must send the hs_token in clear, so it cannot be hashed; the as_token
// only has to be recognised, so bbolt keeps its SHA-256, as it does for
// access tokens.
type Secrets interface {
	Get(name string) (string, error)
	Set(name, value string) error
	Remove(name string) error
}

// HSTokenSecret is the secret store's name for an appservice's hs_token.
func HSTokenSecret(id string) string { return "appservice." + id + ".hs_token" }

// record is the bbolt value of bucket appservices: the registration
// without its tokens, and their hashes.
type record struct {
	Reg         Registration `json:"registration"`
	ASTokenHash string       `json:"as_token_sha256"`
	HSTokenHash string       `json:"hs_token_sha256"`
	AddedTS     int64        `json:"added_ts"`
	// AddedPos is the stream position at registration: the queue sends
	// only later events, even when it catches up after a restart.
	AddedPos uint64 `json:"added_pos"`
}

func hashToken(t string) string {
	h := sha256.Sum256([]byte(t))
	return hex.EncodeToString(h[:])
}

// Service is one registered appservice as the rest of Hearth sees it.
type Service struct {
	Reg      Registration // ASToken is never set; HSToken is loaded from Secrets
	AddedTS  int64
	AddedPos uint64
	asHash   string
	hsHash   string
	server   string
}

// ID is the registration's id.
func (s *Service) ID() string { return s.Reg.ID }

// SenderLocalpart is the appservice's own user.
func (s *Service) SenderLocalpart() string { return s.Reg.SenderLocalpart }

// RateLimited is the registration's rate_limited.
func (s *Service) RateLimited() bool { return s.Reg.IsRateLimited() }

// ManagesDevices: MSC4190 (device management) or MSC3202 (device
// masquerading) is on in the registration.
func (s *Service) ManagesDevices() bool { return s.Reg.MSC4190 || s.Reg.MSC3202 }

// OwnsUser reports whether the appservice may act as userID: its sender
// or a user in its users namespace (Application Service API §"Identity
// assertion").
func (s *Service) OwnsUser(userID string) bool { return s.Reg.OwnsUser(userID, s.server) }

// Registry is the registered appservices, loaded from bbolt at start and
// kept in memory: each request's token is checked against it.
type Registry struct {
	db       *store.DB
	accounts *account.Accounts
	secrets  Secrets
	server   string

	// change serialises Add and Remove. mu guards byID and is never held
	// across a store write: the queue's follower reads the registry
	// inside its writes, and the store has one writer.
	change sync.Mutex
	mu     sync.RWMutex
	byID   map[string]*Service

	health healthBook
	// queued counts what waits for an appservice; onPing ends its
	// back-off after it pinged successfully (both set by the queue).
	queued func(id string) int
	onPing func(id string)
	// reset forgets the queue's count of an id that was added or
	// removed (set by the queue): a re-added id starts with none queued.
	reset func(id string)
}

// Open loads the registrations; an hs_token missing from the secret store
// is an error, since nothing could be sent to that appservice.
func Open(db *store.DB, accounts *account.Accounts, secrets Secrets) (*Registry, error) {
	r := &Registry{db: db, accounts: accounts, secrets: secrets, server: accounts.ServerName(), byID: map[string]*Service{}}
	var recs []record
	err := db.View(func(tx *store.Tx) error {
		return tx.Bucket(store.Appservices).ForEach(func(k, v []byte) error {
			var rec record
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("appservice %s: decode: %w", k, err)
			}
			recs = append(recs, rec)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	for _, rec := range recs {
		if err := rec.Reg.validate(false); err != nil {
			return nil, fmt.Errorf("appservice %s: stored registration: %w", rec.Reg.ID, err)
		}
		hs, err := secrets.Get(HSTokenSecret(rec.Reg.ID))
		if err != nil {
			return nil, fmt.Errorf("appservice %s: hs_token: %w", rec.Reg.ID, err)
		}
		rec.Reg.HSToken = hs
		r.byID[rec.Reg.ID] = &Service{Reg: rec.Reg, AddedTS: rec.AddedTS, AddedPos: rec.AddedPos, asHash: rec.ASTokenHash, hsHash: rec.HSTokenHash, server: r.server}
	}
	return r, nil
}

// ErrInvalid wraps every refusal of a registration, so callers can tell
// bad input from a failing store.
var ErrInvalid = errors.New("invalid appservice registration")

// Add checks reg against the registered ones and the accounts, then
// stores it and makes its sender user (a service account: no password).
// Refused: a duplicate id or token, an exclusive namespace that overlaps
// another registration's, a sender_localpart that is a person's account.
func (r *Registry) Add(ctx context.Context, reg *Registration) error {
	if err := reg.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := r.accounts.ValidateLocalpart(reg.SenderLocalpart); err != nil {
		return fmt.Errorf("%w: sender_localpart: %w", ErrInvalid, err)
	}
	r.change.Lock()
	defer r.change.Unlock()
	r.mu.RLock()
	err := r.checkAgainstOthers(reg)
	r.mu.RUnlock()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	u, err := r.accounts.Get(reg.SenderLocalpart)
	if err != nil {
		return err
	}
	if u != nil && !u.Service {
		return fmt.Errorf("%w: sender_localpart %q is an existing user's account", ErrInvalid, reg.SenderLocalpart)
	}
	if err := r.secrets.Set(HSTokenSecret(reg.ID), reg.HSToken); err != nil {
		return fmt.Errorf("appservice %s: store hs_token: %w", reg.ID, err)
	}
	stored := *reg
	stored.ASToken, stored.HSToken = "", ""
	rec := record{Reg: stored, ASTokenHash: hashToken(reg.ASToken), HSTokenHash: hashToken(reg.HSToken), AddedTS: time.Now().UnixMilli()}
	err = r.db.Update(ctx, func(tx *store.Tx) error {
		// Nothing of an earlier registration under this id is kept.
		if err := clearQueue(tx, reg.ID); err != nil {
			return err
		}
		rec.AddedPos = tx.Pos()
		b, err := json.Marshal(rec)
		if err != nil {
			return fmt.Errorf("encode: %w", err)
		}
		return tx.Put(store.Appservices, []byte(reg.ID), b)
	})
	if err != nil {
		r.secrets.Remove(HSTokenSecret(reg.ID))
		return fmt.Errorf("appservice %s: store: %w", reg.ID, err)
	}
	if _, err := r.accounts.EnsureService(ctx, reg.SenderLocalpart, ""); err != nil {
		return fmt.Errorf("appservice %s: sender user: %w", reg.ID, err)
	}
	svc := &Service{Reg: *reg, AddedTS: rec.AddedTS, AddedPos: rec.AddedPos, asHash: rec.ASTokenHash, hsHash: rec.HSTokenHash, server: r.server}
	svc.Reg.ASToken = ""
	if r.reset != nil {
		r.reset(reg.ID)
	}
	r.mu.Lock()
	r.byID[reg.ID] = svc
	r.mu.Unlock()
	return nil
}

func (r *Registry) checkAgainstOthers(reg *Registration) error {
	as, hs := hashToken(reg.ASToken), hashToken(reg.HSToken)
	var errs []error
	for _, o := range r.byID {
		if o.Reg.ID == reg.ID {
			errs = append(errs, fmt.Errorf("id %q is already registered (remove it first)", reg.ID))
		}
		if as == o.asHash || as == o.hsHash || hs == o.asHash || hs == o.hsHash {
			errs = append(errs, fmt.Errorf("a token is already used by appservice %q", o.Reg.ID))
		}
		if reg.SenderLocalpart == o.Reg.SenderLocalpart {
			errs = append(errs, fmt.Errorf("sender_localpart %q is appservice %q's", reg.SenderLocalpart, o.Reg.ID))
		}
		for _, kind := range []struct {
			name string
			a, b []Namespace
		}{{"users", reg.Namespaces.Users, o.Reg.Namespaces.Users},
			{"aliases", reg.Namespaces.Aliases, o.Reg.Namespaces.Aliases},
			{"rooms", reg.Namespaces.Rooms, o.Reg.Namespaces.Rooms}} {
			for _, a := range kind.a {
				for _, b := range kind.b {
					if a.Exclusive && b.Exclusive && overlaps(a, b) {
						errs = append(errs, fmt.Errorf("exclusive %s namespace %q overlaps appservice %q's exclusive %q", kind.name, a.Regex, o.Reg.ID, b.Regex))
					}
				}
			}
		}
		if o.OwnsUser("@"+reg.SenderLocalpart+":"+r.server) && exclusiveUser(o.Reg.Namespaces.Users, "@"+reg.SenderLocalpart+":"+r.server) {
			errs = append(errs, fmt.Errorf("sender_localpart %q is in appservice %q's exclusive namespace", reg.SenderLocalpart, o.Reg.ID))
		}
	}
	return errors.Join(errs...)
}

func exclusiveUser(nss []Namespace, userID string) bool {
	_, ex := matches(nss, userID)
	return ex
}

// Remove deletes a registration and its hs_token. Its sender and ghost
// accounts stay, as deactivated accounts do: their names stay taken.
func (r *Registry) Remove(ctx context.Context, id string) error {
	r.change.Lock()
	defer r.change.Unlock()
	// Out of the registry first, so the follower queues nothing more for
	// it; back in if the store refuses.
	r.mu.Lock()
	svc := r.byID[id]
	delete(r.byID, id)
	r.mu.Unlock()
	found := false
	err := r.db.Update(ctx, func(tx *store.Tx) error {
		found = tx.Get(store.Appservices, []byte(id)) != nil
		if !found {
			return nil
		}
		// Its queue and delivery state go with it.
		if err := clearQueue(tx, id); err != nil {
			return err
		}
		return tx.Delete(store.Appservices, []byte(id))
	})
	if err != nil {
		if svc != nil {
			r.mu.Lock()
			r.byID[id] = svc
			r.mu.Unlock()
		}
		return fmt.Errorf("appservice %s: remove: %w", id, err)
	}
	if !found {
		return fmt.Errorf("%w: no appservice %q", ErrNotFound, id)
	}
	if r.reset != nil {
		r.reset(id)
	}
	if err := r.secrets.Remove(HSTokenSecret(id)); err != nil {
		return fmt.Errorf("appservice %s: remove hs_token: %w", id, err)
	}
	return nil
}

// ErrNotFound is an unknown appservice id.
var ErrNotFound = errors.New("not found")

// List returns the registered appservices sorted by id.
func (r *Registry) List() []*Service {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*Service, 0, len(r.byID))
	for _, s := range r.byID {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *Service) int {
		if a.Reg.ID < b.Reg.ID {
			return -1
		}
		return 1
	})
	return out
}

// Get returns the appservice id, or nil.
func (r *Registry) Get(id string) *Service {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.byID[id]
}

// ByToken returns the appservice whose as_token this is, or nil.
func (r *Registry) ByToken(token string) *Service {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if len(r.byID) == 0 {
		return nil // most servers have none: every request asks, so skip the hash
	}
	h := hashToken(token)
	for _, s := range r.byID {
		if subtle.ConstantTimeCompare([]byte(h), []byte(s.asHash)) == 1 {
			return s
		}
	}
	return nil
}

// ExclusiveUserOwner returns the id of the appservice that claims userID
// exclusively (its sender or an exclusive users namespace), or "".
func (r *Registry) ExclusiveUserOwner(userID string) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, s := range r.byID {
		if userID == "@"+s.Reg.SenderLocalpart+":"+r.server || exclusiveUser(s.Reg.Namespaces.Users, userID) {
			return s.Reg.ID
		}
	}
	return ""
}

// ExclusiveAliasOwner returns the id of the appservice that claims alias
// exclusively, or "".
func (r *Registry) ExclusiveAliasOwner(alias string) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, s := range r.byID {
		if _, ex := matches(s.Reg.Namespaces.Aliases, alias); ex {
			return s.Reg.ID
		}
	}
	return ""
}

// clearQueue deletes what is queued for id and its delivery state.
func clearQueue(tx *store.Tx, id string) error {
	prefix := store.Key(id, "")
	c := tx.Cursor(store.AppserviceQueue)
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return tx.Delete(store.AppserviceMeta, stateKey(id))
}
