package matrix

import (
	"container/list"
	"context"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// Password guessing (Client-Server API §"Rate limiting"; issue 10).
//
// Every password check (POST /login, and the m.login.password stage of
// UIA behind deactivation, password change, device deletion, cross-signing
// reset and login tokens) goes through Server.checkPassword, which
//
//  1. reserves one attempt in the client address's bucket and in the
//     account's bucket before the password is looked at, so that concurrent
//     guesses cannot all pass a check made before any of them failed;
//     the reservation is refunded if the password was right, and kept
//     (as a failure) if it was wrong;
//  2. takes one of a few hashing slots, so that a flood of guesses cannot
//     take every CPU (bcrypt costs ~50-100 ms) from the requests of
//     everyone else: over the cap a request waits briefly, then is refused
//     with 429 and its reservation refunded.
//
// The address bucket is the smaller one, so a single guesser is stopped by
// it before the account's bucket fills and the owner, from another
// address, can still log in. On the default loopback listener every local
// client shares one address, and nothing tells them apart (X-Forwarded-For
// is not trusted: nothing sits in front of Hearth); there a guesser can
// keep password logins refused while it keeps guessing, but since refused
// attempts are never counted no bucket ever holds more than its burst, so
// the refusal ends one leak interval after the guessing stops (instead of
// growing with every guess), and login tokens from the control API
// (`hearth open chat`) are not limited at all.
const (
	addrBurst    = 5
	accountBurst = 10
	guessLeak    = 10 * time.Second // one failure forgiven per interval
	// maxLimiterKeys bounds each limiter's memory under a flood of
	// distinct user names or addresses; the least recently touched key
	// goes first.
	maxLimiterKeys = 10000
	// hashSlotWait is how long a password check waits for a hashing slot
	// before it is refused.
	hashSlotWait = time.Second
)

// limiter counts failures per key in a leaky bucket. Lookups are a map
// access; keys are kept in least-recently-touched order so that drained and
// surplus keys are dropped from the front in O(1) each. It is not safe for
// concurrent use: passwordGuard locks around it.
type limiter struct {
	burst float64
	leak  time.Duration
	max   int
	keys  map[string]*list.Element // of *bucket
	order *list.List               // least recently touched first
}

type bucket struct {
	key   string
	level float64
	at    time.Time
}

func newLimiter(burst int, leak time.Duration, maxKeys int) *limiter {
	return &limiter{burst: float64(burst), leak: leak, max: maxKeys,
		keys: map[string]*list.Element{}, order: list.New()}
}

// level returns key's bucket level at now, without creating it.
func (l *limiter) level(key string, now time.Time) float64 {
	e := l.keys[key]
	if e == nil {
		return 0
	}
	b := e.Value.(*bucket)
	return max(0, b.level-float64(now.Sub(b.at))/float64(l.leak))
}

// wait is how long until key may add one more failure without going over
// its burst (zero if it may now).
func (l *limiter) wait(key string, now time.Time) time.Duration {
	over := l.level(key, now) + 1 - l.burst
	if over <= 0 {
		return 0
	}
	return max(time.Millisecond, time.Duration(over*float64(l.leak)))
}

// add changes key's level by delta at now.
func (l *limiter) add(key string, delta float64, now time.Time) {
	lv := max(0, l.level(key, now)+delta)
	if e := l.keys[key]; e != nil {
		b := e.Value.(*bucket)
		b.level, b.at = lv, now
		l.order.MoveToBack(e)
	} else if lv > 0 {
		l.keys[key] = l.order.PushBack(&bucket{key: key, level: lv, at: now})
	}
	l.prune(now)
}

// prune drops drained buckets from the front, and the least recently
// touched ones while there are more than max. A bucket at the front was
// touched before every other, so once the front one still holds
// failures the scan can stop.
func (l *limiter) prune(now time.Time) {
	for e := l.order.Front(); e != nil; e = l.order.Front() {
		b := e.Value.(*bucket)
		if l.order.Len() <= l.max && l.level(b.key, now) > 0 {
			return
		}
		l.order.Remove(e)
		delete(l.keys, b.key)
	}
}

func (l *limiter) size() int { return len(l.keys) }

// passwordGuard holds what Server.checkPassword needs: the per-address and
// per-account limiters and the hashing slots.
type passwordGuard struct {
	mu       sync.Mutex
	addrs    *limiter
	accounts *limiter
	now      func() time.Time

	slots    chan struct{}
	slotWait time.Duration
}

func newPasswordGuard() *passwordGuard {
	return &passwordGuard{
		addrs:    newLimiter(addrBurst, guessLeak, maxLimiterKeys),
		accounts: newLimiter(accountBurst, guessLeak, maxLimiterKeys),
		now:      time.Now,
		slots:    make(chan struct{}, 2*runtime.GOMAXPROCS(0)),
		slotWait: hashSlotWait,
	}
}

// reserve takes one attempt from addr's and account's buckets, or none and
// the longer wait if either is full.
func (g *passwordGuard) reserve(addr, account string) (refund func(), retry time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	retry = g.addrs.wait(addr, now)
	if account != "" {
		retry = max(retry, g.accounts.wait(account, now))
	}
	if retry > 0 {
		return nil, retry
	}
	g.addrs.add(addr, 1, now)
	if account != "" {
		g.accounts.add(account, 1, now)
	}
	return func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		now := g.now()
		g.addrs.add(addr, -1, now)
		if account != "" {
			g.accounts.add(account, -1, now)
		}
	}, 0
}

// hashSlot waits up to slotWait for a hashing slot; release gives it back.
// A client that hangs up meanwhile is refused as if the wait had run out:
// its bare context error would be answered and logged as an internal
// error, at a level the log's repeat limiter lets through.
func (g *passwordGuard) hashSlot(ctx context.Context) (release func(), err error) {
	t := time.NewTimer(g.slotWait)
	defer t.Stop()
	select {
	case g.slots <- struct{}{}:
		return func() { <-g.slots }, nil
	case <-t.C:
	case <-ctx.Done():
	}
	return nil, matrixerr.LimitExceeded(g.slotWait.Milliseconds())
}

// hashing runs fn, which hashes a new password, in a hashing slot: the
// same cap as password checks, so that a flood of registrations cannot
// take every CPU either.
func (g *passwordGuard) hashing(ctx context.Context, fn func() error) error {
	release, err := g.hashSlot(ctx)
	if err != nil {
		return err
	}
	defer release()
	return fn()
}

// guarded runs check, a secret check for account (empty: none, the
// address alone counts) by the client of r, under the guard: it is
// refused with 429 while either bucket is full, and counted as a failure
// unless it returns nil. hash says whether check costs a password hash,
// and so needs a hashing slot.
func (g *passwordGuard) guarded(r *http.Request, account string, hash bool, check func() error) error {
	refund, retry := g.reserve(clientAddr(r), account)
	if refund == nil {
		return matrixerr.LimitExceeded(retry.Milliseconds())
	}
	if hash {
		release, err := g.hashSlot(r.Context())
		if err != nil {
			refund() // nothing was checked
			return err
		}
		defer release()
	}
	err := check()
	if err == nil {
		refund()
	}
	return err
}

// clientAddr is the key of the client's address: the peer of the
// connection (no proxy headers are trusted), an IPv6 address by its /64,
// which one host usually holds whole.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// checkPassword checks localpart's password for the client of r, under
// the guessing limits above.
func (s *Server) checkPassword(r *http.Request, localpart, password string) error {
	return s.guard.guarded(r, localpart, true, func() error {
		_, err := s.accounts.CheckPassword(localpart, password)
		return err
	})
}
