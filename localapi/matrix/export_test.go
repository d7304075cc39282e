package matrix

import (
	"sync"
	"time"
)

// Exports for the external tests (package matrix_test) of unexported
// token code.

// ParseSyncToken is parseSyncToken with the token's parts spelled out.
func ParseSyncToken(s string) (pos, eph uint64, err error) {
	t, err := parseSyncToken(s)
	return t.pos, t.eph, err
}

// SyncToken is the since token the server hands out for (pos, eph).
func SyncToken(pos, eph uint64) string { return syncToken{pos, eph}.String() }

// ParsePageToken is parsePageToken.
var ParsePageToken = parsePageToken

// PageToken is the pagination token the server hands out for pos.
var PageToken = pageToken

// Guessing limits and UIA bounds (ratelimit.go, uia.go).
const (
	AddrBurst      = addrBurst
	AccountBurst   = accountBurst
	GuessLeak      = guessLeak
	MaxLimiterKeys = maxLimiterKeys
	MaxUIASessions = maxUIASessions
	UIAIdle        = uiaIdle
)

// SetClock makes the guessing limits and UIA sessions read the time from
// now, so tests can move past a window without sleeping.
func (s *Server) SetClock(now func() time.Time) {
	s.guard.mu.Lock()
	s.guard.now = now
	s.guard.mu.Unlock()
	s.uia.mu.Lock()
	s.uia.now = now
	s.uia.mu.Unlock()
	s.delayed.mu.Lock()
	s.delayed.now = now
	s.delayed.mu.Unlock()
}

// DelayedMgmtBurst is how many delayed-event management requests a user
// may make at once (delayed.go).
const DelayedMgmtBurst = delayedMgmtBurst

// SetHashSlotWait sets how long a password check waits for a hashing
// slot, so that tests of the guessing limits are not decided by the
// machine's speed.
func (s *Server) SetHashSlotWait(wait time.Duration) { s.guard.slotWait = wait }

// HoldHashSlots takes every password-hashing slot, and makes a check that
// finds none free wait only wait; release gives the slots back.
func (s *Server) HoldHashSlots(wait time.Duration) (release func()) {
	s.guard.slotWait = wait
	n := cap(s.guard.slots)
	for range n {
		s.guard.slots <- struct{}{}
	}
	return func() {
		for range n {
			<-s.guard.slots
		}
	}
}

// LimiterKeys is how many client addresses and accounts the guessing
// limits remember.
func (s *Server) LimiterKeys() (addrs, accounts int) {
	s.guard.mu.Lock()
	defer s.guard.mu.Unlock()
	return s.guard.addrs.size(), s.guard.accounts.size()
}

// UIASessions is how many UIA sessions are held.
func (s *Server) UIASessions() int { return s.uia.size() }

// SyncWatch records, per user, how many /sync responses were built, how
// many reports /syncs made in all, and the highest stream position a long
// poll has dealt with (by building a response or by ruling the positions
// out).
type SyncWatch struct {
	mu      sync.Mutex
	cond    *sync.Cond
	builds  map[string]int
	reports map[string]int
	handled map[string]uint64
}

// WatchSyncs installs a SyncWatch for the rest of the test. Tests that use
// it must not run in parallel with other /sync tests.
func WatchSyncs(t interface{ Cleanup(func()) }) *SyncWatch {
	w := &SyncWatch{builds: map[string]int{}, reports: map[string]int{}, handled: map[string]uint64{}}
	w.cond = sync.NewCond(&w.mu)
	syncWatch = func(userID string, now uint64, built bool) {
		w.mu.Lock()
		defer w.mu.Unlock()
		if built {
			w.builds[userID]++
		}
		w.reports[userID]++
		w.handled[userID] = max(w.handled[userID], now)
		w.cond.Broadcast()
	}
	t.Cleanup(func() { syncWatch = nil })
	return w
}

// Builds is how many /sync responses were built for userID.
func (w *SyncWatch) Builds(userID string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.builds[userID]
}

// Reports is how many times /syncs of userID reported: built a response,
// or ruled positions out (a long poll that waits from a current token, or
// goes back to waiting after a wake-up).
func (w *SyncWatch) Reports(userID string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.reports[userID]
}

// AwaitReports blocks until /syncs of userID have reported n times. A
// /sync's first report is the sign that it reached the handler: a long
// poll makes it before it waits, by building or by finding its token
// current. AwaitHandled cannot tell that for a poll whose token is the
// position of the user's last build, which has dealt with it already.
func (w *SyncWatch) AwaitReports(userID string, n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.reports[userID] < n {
		w.cond.Wait()
	}
}

// AwaitHandled blocks until a /sync of userID has dealt with position pos.
func (w *SyncWatch) AwaitHandled(userID string, pos uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.handled[userID] < pos {
		w.cond.Wait()
	}
}

// PresenceExpiry is when the user's presence expiry timer is due (zero
// if none was ever armed).
func (s *Server) PresenceExpiry(localpart string) time.Time {
	s.presence.mu.Lock()
	defer s.presence.mu.Unlock()
	if up := s.presence.users[localpart]; up != nil && up.expiry != nil {
		return up.expiryAt
	}
	return time.Time{}
}

// ShareSyncs turns the sharing of long polls' responses (sync_shared.go)
// on or off; off, every /sync builds its own response.
func (s *Server) ShareSyncs(on bool) {
	s.shared.mu.Lock()
	defer s.shared.mu.Unlock()
	s.shared.off = !on
	s.shared.ring = [len(s.shared.ring)]*sharedSync{}
}

// SharedFromMemory is how many shared responses took their user's part
// from memory rather than a read transaction (sync_shared.go).
func (s *Server) SharedFromMemory() int64 { return s.shared.fromMemory.Load() }

// PreparedSyncs is how many responses were prepared beside their
// message's commit and kept (sync_early.go).
func (s *Server) PreparedSyncs() int64 { return s.shared.prepared.Load() }
