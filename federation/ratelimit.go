package federation

import (
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/federation/ratelimit"
)

// Per-origin rate limits on inbound federation (issue 10). Every request
// behind X-Matrix authentication costs its origin a token; an origin out
// of tokens gets 429 M_LIMIT_EXCEEDED with retry_after_ms before its body
// is read. The defaults are far above what a peer sending us its rooms'
// traffic needs (its queue sends one transaction at a time), so only a
// flood is refused.
const (
	defaultOriginRate  = 50  // requests per second, sustained
	defaultOriginBurst = 200 // requests at once after a quiet spell
	maxLimitedOrigins  = 4096

	// A request whose signature does not check out may have made us
	// fetch its origin's keys (any server name the client chose), so
	// each client address may fail only so often: one a second after a
	// burst of 30. Honest servers fail rarely (a key rotation we have not
	// seen yet), and a peer that keeps failing gets 429 instead of 401.
	failedAuthRate    = 1
	failedAuthBurst   = 30
	maxLimitedClients = 4096
)

// originLimiter is a token bucket per origin server. A token is taken
// only once a request's signature checked out, so a forger naming
// another server's origin cannot spend that server's budget; before the
// body, check only looks.
type originLimiter struct {
	buckets *ratelimit.Buckets[spec.ServerName]
}

func newOriginLimiter(rate, burst float64) *originLimiter {
	if rate <= 0 {
		rate = defaultOriginRate
	}
	if burst <= 0 {
		burst = defaultOriginBurst
	}
	return &originLimiter{buckets: ratelimit.New[spec.ServerName](rate, burst, maxLimitedOrigins)}
}

// check reports how long origin must wait before its next request: zero
// when it has a token.
func (l *originLimiter) check(origin spec.ServerName, now time.Time) time.Duration {
	return l.buckets.Wait(origin, 1, now)
}

// take spends a token of origin, whose request was authenticated.
func (l *originLimiter) take(origin spec.ServerName, now time.Time) {
	l.buckets.Take(origin, 1, now)
}
