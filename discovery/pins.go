package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/hearth-chat/hearth/internal/store"
)

// The trust-on-first-use pins (bucket lanpins): pinning, the owner's
// answer to a key change, forgetting, and the bound on their number.

// pin is a lanpins value.
type pin struct {
	Key      string `json:"key"` // <key ID>:<base64 key>
	PinnedTS int64  `json:"pinned_ts"`
	SeenTS   int64  `json:"seen_ts,omitempty"` // last announcement, for eviction (absent: pinned_ts)
	// Refused is a new key the owner chose to keep refusing (Refuse), so
	// it is no longer flagged as news; a third key is flagged again.
	Refused string `json:"refused,omitempty"`
}

func (p pin) seen() int64 { return max(p.SeenTS, p.PinnedTS) }

// pinKey returns the pin of name, pinning key if there is none, create
// is set and there is room. An empty Key means "no pin" (none and create
// unset, or the table is full of pins seen within PinKeep).
func (t *table) pinKey(ctx context.Context, name, key string, now time.Time, create bool) (pin, error) {
	var have pin
	err := t.db.View(func(tx *store.Tx) error {
		if v := tx.Get(store.LANPins, []byte(name)); v != nil {
			return json.Unmarshal(v, &have)
		}
		return nil
	})
	if err != nil {
		return pin{}, fmt.Errorf("discovery: read pin of %s: %w", name, err)
	}
	if have.Key != "" && (have.Key != key || now.UnixMilli()-have.seen() < pinTouch.Milliseconds()) {
		return have, nil
	}
	t.mu.Lock()
	full := have.Key == "" && (!create || now.Before(t.pinsFullUntil))
	t.mu.Unlock()
	if full {
		return pin{}, nil
	}
	err = t.db.Update(ctx, func(tx *store.Tx) error {
		have = pin{}
		if cur := tx.Get(store.LANPins, []byte(name)); cur != nil {
			if err := json.Unmarshal(cur, &have); err != nil {
				return err
			}
		}
		switch {
		case have.Key == key: // touch: remember it was seen, for eviction
			have.SeenTS = now.UnixMilli()
		case have.Key != "": // pinned meanwhile to another key
			return nil
		default:
			ok, err := makeRoomForPin(tx, now)
			if err != nil || !ok {
				if err == nil {
					t.mu.Lock()
					t.pinsFullUntil = now.Add(time.Minute)
					t.mu.Unlock()
				}
				return err
			}
			have = pin{Key: key, PinnedTS: now.UnixMilli(), SeenTS: now.UnixMilli()}
		}
		v, _ := json.Marshal(have)
		return tx.Put(store.LANPins, []byte(name), v)
	})
	if err != nil {
		return pin{}, fmt.Errorf("discovery: pin key of %s: %w", name, err)
	}
	return have, nil
}

// decide records the owner's answer to a key change of name: accept pins
// the key it announces now (a reinstall); refuse remembers that key as
// refused, so it stops being flagged as new. It reports false when name
// is not listed with a changed key.
func (t *table) decide(ctx context.Context, name string, accept bool, now time.Time) (bool, []Change, error) {
	t.mu.Lock()
	var announced string
	if e := t.keyChange(name); e != nil {
		announced = e.KeyID + ":" + e.Key
	}
	changed := t.changedKeys(name)
	t.mu.Unlock()
	if announced == "" {
		return false, nil, nil
	}
	if accept && changed > 1 {
		// Two new keys for one name: the owner cannot tell which one
		// they are accepting, and an impostor announcing the name over
		// and over would be the one heard last when a reinstalled
		// neighbour is accepted.
		return false, nil, fmt.Errorf("discovery: %s: %w", name, ErrKeyAmbiguous)
	}
	err := t.db.Update(ctx, func(tx *store.Tx) error {
		var p pin
		if cur := tx.Get(store.LANPins, []byte(name)); cur != nil {
			if err := json.Unmarshal(cur, &p); err != nil {
				return err
			}
		}
		if accept {
			p = pin{Key: announced, PinnedTS: now.UnixMilli(), SeenTS: now.UnixMilli()}
		} else {
			p.Refused = announced
		}
		v, _ := json.Marshal(p)
		return tx.Put(store.LANPins, []byte(name), v)
	})
	if err != nil {
		return false, nil, fmt.Errorf("discovery: record the decision on %s's key: %w", name, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	// An entry's map key holds its key state, and accepting swaps the
	// pinned and the changed entry's keys: take the name's entries out
	// first and put each back under its new key, so none is decided twice
	// or lands on another's slot.
	var mine []*entry
	for k, e := range t.peers {
		if e.ServerName == name {
			mine = append(mine, e)
			delete(t.peers, k)
		}
	}
	var out []Change
	for _, e := range mine {
		announcedKey := e.KeyID+":"+e.Key == announced
		switch {
		case announcedKey && !accept:
			e.KeyRefused = true
		case announcedKey:
			e.KeyChanged, e.KeyRefused, e.Verified = false, false, e.Bound
		case accept: // the key pinned before is now the changed one
			if e.Routable() {
				out = append([]Change{{Peer: e.Peer, Gone: true}}, out...)
			}
			e.KeyChanged, e.KeyRefused, e.Verified = true, false, false
		}
		t.peers[entryKey(e.Peer)] = e
		if announcedKey && accept && e.Routable() {
			out = append(out, Change{Peer: e.Peer})
		}
	}
	return true, out, nil
}

// ErrKeyAmbiguous: Accept was asked for a name announced with more than
// one key other than the pinned one; none is pinned. The owner can wait
// for the impostor's entry to expire, or Forget the name.
var ErrKeyAmbiguous = errors.New("more than one new key is announced for this name; not accepting any")

// changedKeys is how many entries of name announce a key that is not the
// pinned one and that the owner has not refused (each such key has its
// own entry).
func (t *table) changedKeys(name string) int {
	n := 0
	for _, e := range t.peers {
		if e.ServerName == name && e.KeyChanged && !e.KeyRefused {
			n++
		}
	}
	return n
}

// keyChange is the most recently heard entry of name whose key is not
// the pinned one, preferring one the owner has not refused (a refused
// impostor heard last must not be what a later Accept pins), or nil.
func (t *table) keyChange(name string) *entry {
	var found *entry
	for _, e := range t.peers {
		if e.ServerName != name || !e.KeyChanged {
			continue
		}
		if found == nil || (found.KeyRefused && !e.KeyRefused) ||
			(found.KeyRefused == e.KeyRefused && e.LastSeen.After(found.LastSeen)) {
			found = e
		}
	}
	return found
}

// pinnedSPKI is the certificate key bound by name's verified announcement.
func (t *table) pinnedSPKI(name string) ([32]byte, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.peers[name]; ok && e.Verified && !e.KeyChanged {
		return e.TLSKey, true
	}
	return [32]byte{}, false
}

// makeRoomForPin keeps the pin table under MaxPins: when full it deletes
// the pin seen least recently if that was more than PinKeep ago.
func makeRoomForPin(tx *store.Tx, now time.Time) (bool, error) {
	n, oldestTS := 0, int64(0)
	var oldest []byte
	c := tx.Cursor(store.LANPins)
	for k, v := c.First(); k != nil; k, v = c.Next() {
		n++
		var p pin
		if json.Unmarshal(v, &p) != nil {
			p = pin{} // unreadable: the first to go
		}
		if oldest == nil || p.seen() < oldestTS {
			oldest, oldestTS = slices.Clone(k), p.seen()
		}
	}
	if n < MaxPins {
		return true, nil
	}
	if now.UnixMilli()-oldestTS < PinKeep.Milliseconds() {
		slog.Warn("LAN discovery: the pin table is full of recently seen servers; not pinning a new one", "max", MaxPins)
		return false, nil
	}
	return true, tx.Delete(store.LANPins, oldest)
}

// forget deletes name's pin and its table entry.
func (t *table) forget(ctx context.Context, name string) (bool, []Change, error) {
	existed := false
	err := t.db.Update(ctx, func(tx *store.Tx) error {
		existed = tx.Get(store.LANPins, []byte(name)) != nil
		if !existed {
			return nil
		}
		return tx.Delete(store.LANPins, []byte(name))
	})
	if err != nil {
		return false, nil, fmt.Errorf("discovery: forget %s: %w", name, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Change
	for k, e := range t.peers {
		if e.ServerName == name {
			existed = true
			delete(t.peers, k)
			if e.Routable() {
				out = append(out, Change{Peer: e.Peer, Gone: true})
			}
		}
	}
	return existed, out, nil
}
