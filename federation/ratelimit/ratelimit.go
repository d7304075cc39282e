// Package ratelimit is the token bucket per key behind federation's
// inbound limits (issue 10): per origin server on authenticated requests
// (package federation) and per client address on the unauthenticated
// notary endpoint (federation/serverkeys). It owns no policy: the callers
// choose the rates and what a request costs.
package ratelimit

import (
	"net/netip"
	"sync"
	"time"
)

// Buckets holds one token bucket per key, at most maxKeys of them. It is
// safe for concurrent use.
type Buckets[K comparable] struct {
	rate, burst float64
	maxKeys     int

	mu      sync.Mutex
	buckets map[K]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// New returns buckets refilling at rate tokens a second up to burst, for
// at most maxKeys keys (beyond that the quietest are forgotten, which
// gives them a full bucket again).
func New[K comparable](rate, burst float64, maxKeys int) *Buckets[K] {
	return &Buckets[K]{rate: rate, burst: burst, maxKeys: maxKeys, buckets: make(map[K]*bucket)}
}

// refill brings b up to date; the caller holds l.mu.
func (l *Buckets[K]) refill(b *bucket, now time.Time) {
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(l.burst, b.tokens+el*l.rate)
		b.last = now
	}
}

// Wait reports how long key must wait until it holds n tokens: zero when
// it holds them now. It takes nothing.
func (l *Buckets[K]) Wait(key K, n float64, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.wait(key, n, now)
}

func (l *Buckets[K]) wait(key K, n float64, now time.Time) time.Duration {
	b := l.buckets[key]
	if b == nil {
		if n <= l.burst {
			return 0
		}
		b = &bucket{tokens: l.burst, last: now}
	}
	l.refill(b, now)
	if b.tokens >= n {
		return 0
	}
	return time.Duration((n - b.tokens) / l.rate * float64(time.Second))
}

// Take spends n tokens of key whatever it holds. Concurrent requests may
// take the bucket below zero (down to -burst), which the following ones
// then wait out.
func (l *Buckets[K]) Take(key K, n float64, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.take(key, n, now)
}

func (l *Buckets[K]) take(key K, n float64, now time.Time) {
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= l.maxKeys {
			l.prune(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	l.refill(b, now)
	b.tokens = max(b.tokens-n, -l.burst)
}

// Allow spends n tokens of key if it holds them, in one step, and
// otherwise reports how long to wait (taking nothing).
func (l *Buckets[K]) Allow(key K, n float64, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if wait := l.wait(key, n, now); wait > 0 {
		return wait
	}
	l.take(key, n, now)
	return 0
}

// Len is how many keys are remembered.
func (l *Buckets[K]) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// prune drops the buckets that are full again (their keys were quiet long
// enough that forgetting them changes nothing), then, if the map is still
// full, arbitrary ones down to three quarters (those keys start again from
// a full bucket). Either way the next prune is far off, so take stays O(1)
// amortised.
func (l *Buckets[K]) prune(now time.Time) {
	for k, b := range l.buckets {
		if l.refill(b, now); b.tokens >= l.burst {
			delete(l.buckets, k)
		}
	}
	for k := range l.buckets {
		if len(l.buckets) <= l.maxKeys*3/4 {
			break
		}
		delete(l.buckets, k)
	}
}

// ClientKey is what a limit per client counts a request's peer by (its
// http.Request.RemoteAddr): the IPv4 address, or the IPv6 /64, since one
// host commonly holds a whole /64 and could otherwise take a fresh address
// per request. An IPv4-mapped IPv6 address counts as the IPv4 one.
// Anything else (not from a TCP listener) shares one key.
func ClientKey(remoteAddr string) netip.Prefix {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.Prefix{}
	}
	a := ap.Addr().Unmap().WithZone("")
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}
