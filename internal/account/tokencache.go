package account

import (
	"sync"
	"sync/atomic"

	"github.com/hearth-chat/hearth/internal/store"
)

// Every authenticated request resolved its access token with a read
// transaction and a JSON decode; under 32 senders the transaction's begin
// and end were the most contended lock of the daemon (bbolt's meta lock,
// docs/performance.md "A send's CPU off the writer"). tokenCache keeps the
// tokens Authenticate found, so a known token costs a map lookup.
//
// Only positive answers are kept, and a token is only ever revoked by a
// write that deletes it (logout, device deletion, deactivation, password
// change, refresh, a re-login with the same device ID). Those writes call
// revoked after their commit, which empties the cache and moves the epoch
// on; an answer read in a transaction that began before that commit is
// stored under the old epoch and never used. So once a logout has
// returned, its tokens are refused (Client-Server API §"Logout": the
// access token is invalidated). Expiry is checked on every hit.
type tokenCache struct {
	epoch atomic.Uint64
	mu    sync.Mutex
	m     map[string]cachedToken // access token → what it resolved to
}

type cachedToken struct {
	t     Token
	epoch uint64
}

// maxCachedTokens bounds the cache; it is emptied when full. A personal
// server has a handful of sessions.
const maxCachedTokens = 1024

// tokenCacheKey keeps the one tokenCache of a database on it (store.DB's
// Shared), so every Accounts over one database sees a revocation through
// any of them, and the cache goes with the DB.
type tokenCacheKey struct{}

func tokenCacheFor(db *store.DB) *tokenCache {
	return db.Shared(tokenCacheKey{}, func() any { return &tokenCache{} }).(*tokenCache)
}

// get returns the cached answer for token, if one is current.
func (c *tokenCache) get(token string) (Token, bool) {
	c.mu.Lock()
	e, ok := c.m[token]
	c.mu.Unlock()
	if !ok || e.epoch != c.epoch.Load() {
		return Token{}, false
	}
	return e.t, true
}

// put keeps t for token; epoch is the epoch read before the transaction
// that found t began.
func (c *tokenCache) put(token string, t Token, epoch uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if epoch != c.epoch.Load() {
		return // a revocation committed meanwhile: t may be gone
	}
	if c.m == nil || len(c.m) >= maxCachedTokens {
		c.m = map[string]cachedToken{}
	}
	c.m[token] = cachedToken{t: t, epoch: epoch}
}

// revoked forgets every cached token; called after any commit that may
// have deleted tokens (whether or not it did).
func (c *tokenCache) revoked() {
	c.mu.Lock()
	c.epoch.Add(1)
	c.m = nil
	c.mu.Unlock()
}
