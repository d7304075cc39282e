package discovery

import (
	"bytes"
	"context"
	"encoding/base64"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hearth-chat/hearth/internal/store"
)

// Bounds of what the LAN can make us hold (issue 11, "bad input").
const (
	// MaxPeers caps the peer table. When it is full a new name is
	// refused, unless its key is one we pinned: then it takes the place
	// of the unverified entry closest to expiry, so a flood of made-up
	// names cannot push out the people we know.
	MaxPeers = 256
	// MaxPins caps the TOFU pins. Pinning a new name when full evicts the
	// pin seen least recently, but never one seen within PinKeep: a flood
	// of new names cannot make us forget a neighbour's key and then
	// accept an impostor's.
	MaxPins = 1024
	PinKeep = 24 * time.Hour
	// MaxTTL bounds the TTL we believe, so a record claiming to live for
	// ever still expires (RFC 6762 §10 recommends 75 minutes for
	// non-host records).
	MaxTTL = 75 * time.Minute
	// goodbyeGrace: a record received with TTL 0 is dropped one second
	// later (RFC 6762 §10.1).
	goodbyeGrace = time.Second
	// backAfter: a routable peer heard again unasked after this much
	// silence is reported again (a Change, not Gone), as when it appears: it may be
	// back from a pulled cable or a Wi-Fi drop without its records having
	// expired, and what federation queued for it meanwhile should go now,
	// not when the queue's back-off runs out. A peer re-announces when its
	// link comes back (checkNetworks), so this is at once.
	backAfter = 5 * time.Second
	// pinTouch: how stale a pin's seen time may get before it is written
	// again, so that refreshes do not write to disk each time.
	pinTouch = time.Hour
)

// announcement is one parsed DNS-SD answer.
type announcement struct {
	name       string
	addrs      []netip.Addr
	port       int
	keyID, key string
	extra      map[string]string
}

// Change is one routing-relevant change to the table: a verified peer
// appeared, moved or was heard again after a silence (Gone false), or it expired, said goodbye, was
// forgotten or its key changed (Gone true).
type Change struct {
	Peer Peer
	Gone bool
}

// entry is a peer and what the table needs to keep its records fresh.
type entry struct {
	Peer
	instance  string
	ttl       time.Duration
	refreshes int           // refresh queries sent since last heard (RFC 6762 §5.2: at 80, 85, 90, 95 %)
	jitter    time.Duration // 0–2 % of ttl added to each refresh time
}

// back reports whether an announcement at now is the peer coming back:
// after at least backAfter of silence, but well before the refresh
// queries of 80 % of the TTL, whose answers are routine. (A peer away
// longer than half its TTL comes back when its entry expires and it
// appears again.)
func (e *entry) back(now time.Time) bool {
	silence := now.Sub(e.LastSeen)
	return e.refreshes == 0 && silence >= backAfter && silence < e.ttl/2
}

func (e *entry) refreshAt(k int) time.Time {
	return e.LastSeen.Add(e.ttl*time.Duration(80+5*k)/100 + e.jitter)
}

// table is the peer table and its TOFU pins (bucket lanpins).
type table struct {
	db       *store.DB
	self     string       // own server name: own announcements are ignored
	internet InternetKeys // nil: public names are never confirmed

	mu         sync.Mutex
	peers      map[string]*entry
	selfLogged bool
	fullLogged bool
	// pinsFullUntil: the pin table was full of recent pins; until then a
	// new name is not even tried (each try is a write transaction), so a
	// flood of new names costs no disk writes.
	pinsFullUntil time.Time
}

func newTable(db *store.DB, self string, internet InternetKeys) *table {
	return &table{db: db, self: self, internet: internet, peers: map[string]*entry{}}
}

// observe records an announcement (ttl > 0) or a goodbye (ttl 0) heard
// at now and returns the routing changes it makes.
func (t *table) observe(ctx context.Context, s sighting, now time.Time) ([]Change, error) {
	a := s.ann
	if a.name == t.self {
		t.mu.Lock()
		if !t.selfLogged {
			slog.Debug("LAN discovery: ignoring announcements of our own server name", "server_name", a.name)
			t.selfLogged = true
		}
		t.mu.Unlock()
		return nil, nil
	}
	if s.ttl <= 0 {
		t.goodbye(a.name, s.instance, now)
		return nil, nil
	}
	ttl := min(s.ttl, MaxTTL)
	p := Peer{ServerName: a.name, Port: a.port, KeyID: a.keyID, Key: a.key, FirstSeen: now, LastSeen: now,
		Expires: now.Add(ttl), LAN: isLANName(a.name), TXT: a.extra}
	for _, ip := range a.addrs {
		p.Addrs = append(p.Addrs, ip.String())
	}
	if spki, err := verifyBinding(a.name, a.key, a.extra); err == nil {
		p.Bound, p.TLSKey = true, spki
	}
	announced := a.keyID + ":" + a.key
	var pinned pin
	if p.LAN {
		var err error
		// Only an announcement with a valid binding is pinned: the pin is
		// the first accepted name → key binding (issue 11).
		if pinned, err = t.pinKey(ctx, a.name, announced, now, p.Bound); err != nil {
			return nil, err
		}
		p.KeyChanged = pinned.Key != "" && pinned.Key != announced
		p.Verified = pinned.Key == announced && p.Bound
		p.KeyRefused = p.KeyChanged && pinned.Refused == announced
	} else if p.Bound {
		p.Verified, p.KeyMismatch = t.checkInternetKey(a.name, a.keyID, a.key)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	k := entryKey(p)
	old, known := t.peers[k]
	if !known && len(t.peers) >= MaxPeers && !t.evictFor(p) {
		if !t.fullLogged {
			slog.Warn("LAN discovery: the peer table is full; ignoring new names", "max", MaxPeers)
			t.fullLogged = true
		}
		return nil, nil
	}
	e := &entry{Peer: p, instance: s.instance, ttl: ttl, jitter: time.Duration(rand.Int64N(int64(ttl/50) + 1))}
	if known {
		e.FirstSeen = old.FirstSeen
	}
	t.peers[k] = e
	if p.KeyChanged && !p.KeyRefused && (!known || !old.KeyChanged || old.Key != p.Key) {
		slog.Warn("LAN discovery: a server announced another key than the one pinned for its name; not routing to it",
			"server_name", a.name, "key_id", a.keyID, "pinned", pinned.Key)
	}
	if p.KeyMismatch && !known {
		slog.Warn("LAN discovery: a server announced another key than the internet's for its name; not routing to it",
			"server_name", a.name, "key_id", a.keyID)
	}
	wasRoutable := known && old.Routable()
	switch {
	case p.Routable() && (!wasRoutable || old.Port != p.Port || !slices.Equal(old.Addrs, p.Addrs) || old.back(now)):
		return []Change{{Peer: p}}, nil
	case wasRoutable && !p.Routable():
		return []Change{{Peer: p, Gone: true}}, nil
	}
	return nil, nil
}

// checkInternetKey compares a public name's announced key (unpadded
// base64) with the key of that ID the internet gave: confirmed when they
// are equal, mismatch when they differ, neither when none is known.
func (t *table) checkInternetKey(name, keyID, key string) (confirmed, mismatch bool) {
	if t.internet == nil {
		return false, false
	}
	known, ok := t.internet.InternetKey(name, keyID)
	if !ok {
		return false, false
	}
	announced, err := base64.RawStdEncoding.DecodeString(key)
	if err != nil || !bytes.Equal(announced, known) {
		return false, true
	}
	return true, false
}

// entryKey is where the table keeps p: under its server name, unless its
// key is not the pinned one; then under name and key, beside the pinned
// peer's entry. So an impostor announcing a neighbour's name is listed
// as a key change without displacing the neighbour, whose route stays.
func entryKey(p Peer) string {
	if p.KeyChanged || p.KeyMismatch {
		return p.ServerName + "\x00" + p.KeyID + ":" + p.Key
	}
	return p.ServerName
}

// evictFor makes room for p in a full table when p is verified, by
// dropping the unverified entry closest to expiry.
func (t *table) evictFor(p Peer) bool {
	if !p.Verified {
		return false
	}
	var victim *entry
	victimKey := ""
	for k, e := range t.peers {
		if !e.Verified && (victim == nil || e.Expires.Before(victim.Expires)) {
			victim, victimKey = e, k
		}
	}
	if victim == nil {
		return false
	}
	delete(t.peers, victimKey)
	return true
}

// goodbye schedules the end of a peer that withdrew its records.
func (t *table) goodbye(name, instance string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range t.peers {
		if (name != "" && e.ServerName == name) || (name == "" && e.instance == instance) {
			if end := now.Add(goodbyeGrace); e.Expires.After(end) {
				e.Expires = end
			}
			e.refreshes = 4
		}
	}
}

// suspect makes every peer expire within grace unless it answers again
// (after this machine slept), without refresh queries of their own: the
// browse queries sent meanwhile ask everyone.
func (t *table) suspect(now time.Time, grace time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range t.peers {
		if end := now.Add(grace); e.Expires.After(end) {
			e.Expires = end
		}
		e.refreshes = 4
	}
}

// due returns the instances whose refresh query is due at now and the
// changes of the peers that expired.
func (t *table) due(now time.Time) (refresh []string, changes []Change) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for name, e := range t.peers {
		if !now.Before(e.Expires) {
			delete(t.peers, name)
			if e.Routable() {
				changes = append(changes, Change{Peer: e.Peer, Gone: true})
			}
			continue
		}
		if e.refreshes < 4 && !now.Before(e.refreshAt(e.refreshes)) {
			for e.refreshes < 4 && !now.Before(e.refreshAt(e.refreshes)) {
				e.refreshes++
			}
			refresh = append(refresh, e.instance)
		}
	}
	slices.Sort(refresh)
	refresh = slices.Compact(refresh)
	return refresh, changes
}

// next is the time of the table's next refresh or expiry (zero: none).
func (t *table) next() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	var at time.Time
	for _, e := range t.peers {
		n := e.Expires
		if e.refreshes < 4 {
			n = e.refreshAt(e.refreshes)
		}
		if at.IsZero() || n.Before(at) {
			at = n
		}
	}
	return at
}

// known lists the instances whose records have more than half their TTL
// left, as known answers for a browse query (RFC 6762 §7.1).
func (t *table) known(now time.Time) []knownAnswer {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []knownAnswer
	for _, e := range t.peers {
		if left := e.Expires.Sub(now); left > e.ttl/2 {
			out = append(out, knownAnswer{instance: e.instance, ttl: left})
		}
	}
	slices.SortFunc(out, func(a, b knownAnswer) int { return strings.Compare(a.instance, b.instance) })
	return out
}

// list returns the peers sorted by server name, and the announcements of
// one name (a server and an impersonator) by instance name, so that the
// order is the same from call to call.
func (t *table) list() []Peer {
	t.mu.Lock()
	defer t.mu.Unlock()
	type named struct {
		p        Peer
		instance string
	}
	all := make([]named, 0, len(t.peers))
	for _, e := range t.peers {
		cp := e.Peer
		cp.Addrs = slices.Clone(e.Addrs)
		all = append(all, named{cp, e.instance})
	}
	slices.SortFunc(all, func(a, b named) int {
		if c := strings.Compare(a.p.ServerName, b.p.ServerName); c != 0 {
			return c
		}
		return strings.Compare(a.instance, b.instance)
	})
	out := make([]Peer, len(all))
	for i, n := range all {
		out[i] = n.p
	}
	return out
}

// recheck checks name's public-name entries against the internet's keys
// again (InternetKeys learned a key of name since they were heard) and
// returns the routing change. Each entry is taken out and put back under
// its new key, as in decide; of two landing on one key the one heard
// last stays. Only the entry under the bare name can be routable.
func (t *table) recheck(name string) []Change {
	if t.internet == nil || isLANName(name) {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var mine []*entry
	var before *Peer
	for k, e := range t.peers {
		if e.ServerName == name {
			if e.Routable() {
				p := e.Peer
				before = &p
			}
			mine = append(mine, e)
			delete(t.peers, k)
		}
	}
	for _, e := range mine {
		if e.Bound {
			e.Verified, e.KeyMismatch = t.checkInternetKey(e.ServerName, e.KeyID, e.Key)
		}
		k := entryKey(e.Peer)
		if other, ok := t.peers[k]; ok && other.LastSeen.After(e.LastSeen) {
			continue
		}
		t.peers[k] = e
	}
	after, ok := t.peers[name]
	switch {
	case ok && after.Routable() && (before == nil || before.Key != after.Key):
		return []Change{{Peer: after.Peer}}
	case before != nil && (!ok || !after.Routable()):
		return []Change{{Peer: *before, Gone: true}}
	}
	return nil
}
