package federation

import (
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"
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
)

// originLimiter is a token bucket per origin server. A token is taken
// only once a request's signature checked out, so a forger naming
// another server's origin cannot spend that server's budget; before the
// body, check only looks. Concurrent requests may take the bucket below
// zero, which the following ones then wait out.
type originLimiter struct {
	rate, burst float64

	mu      sync.Mutex
	buckets map[spec.ServerName]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newOriginLimiter(rate, burst float64) *originLimiter {
	if rate <= 0 {
		rate = defaultOriginRate
	}
	if burst <= 0 {
		burst = defaultOriginBurst
	}
	return &originLimiter{rate: rate, burst: burst, buckets: make(map[spec.ServerName]*bucket)}
}

// refill brings b up to date; the caller holds l.mu.
func (l *originLimiter) refill(b *bucket, now time.Time) {
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(l.burst, b.tokens+el*l.rate)
		b.last = now
	}
}

// check reports how long origin must wait before its next request: zero
// when it has a token.
func (l *originLimiter) check(origin spec.ServerName, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[origin]
	if b == nil {
		return 0
	}
	l.refill(b, now)
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}

// take spends a token of origin, whose request was authenticated.
func (l *originLimiter) take(origin spec.ServerName, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[origin]
	if b == nil {
		if len(l.buckets) >= maxLimitedOrigins {
			l.prune(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[origin] = b
	}
	l.refill(b, now)
	b.tokens = max(b.tokens-1, -l.burst)
}

// prune drops the buckets that are full again (their origins were quiet
// long enough that forgetting them changes nothing), then, if the map is
// still full, arbitrary ones down to three quarters (those origins start
// again from a full bucket). Either way the next prune is far off, so
// take stays O(1) amortised.
func (l *originLimiter) prune(now time.Time) {
	for o, b := range l.buckets {
		if l.refill(b, now); b.tokens >= l.burst {
			delete(l.buckets, o)
		}
	}
	for o := range l.buckets {
		if len(l.buckets) <= maxLimitedOrigins*3/4 {
			break
		}
		delete(l.buckets, o)
	}
}
