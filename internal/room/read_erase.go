package room

import (
	"bytes"
	"encoding/json"
	"sync"
	"sync/atomic"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/tidwall/gjson"

	"github.com/hearth-chat/hearth/internal/store"
)

// Erasure (Client-Server API §"Account deactivation", erase): events of a
// user who deactivated with erase are served redacted to every user who
// could not see them at the moment of erasure; those who could still see
// them whole; likewise other servers that had no user in the room then
// are served redacted copies (/event, /backfill, /get_missing_events).
// Nothing is redacted in storage and nothing is sent, as the spec asks.
// State events are exempt: they are the room's configuration (its name,
// its rules, who is in it) that everyone joining later needs, not what
// the user said. No redaction is sent over federation: servers that were
// in the room keep what they had.

// ErasedFunc reports whether a user asked for erasure, and the stream
// position of the request, reading inside tx. The account service answers
// it; the room engine never reads account records itself.
type ErasedFunc func(tx *store.Tx, userID string) (pos uint64, erased bool)

// erasures caches the answers of ErasedFunc per local sender, since every
// event served asks. A user's answer only ever changes from "not erased"
// to "erased", which MarkErased records. Only users of this server are
// asked (erasure is a local account's request), so the cache holds at
// most one entry per local account, however many senders the rooms have.
// The zero value is ready to use.
type erasures struct {
	mu     sync.RWMutex
	lookup ErasedFunc
	known  map[string]erasure
	// some is set once any user has asked for erasure. Until then nobody
	// is looked up, so a search matching 80,000 messages need not read
	// each one's sender (Scope.CanMatch).
	some atomic.Bool
}

type erasure struct {
	pos    uint64
	erased bool
}

// SetErased tells the engine where to learn which users asked for
// erasure, and whether any has yet (MarkErased records the next ones).
func (e *Engine) SetErased(f ErasedFunc, some bool) {
	e.erased.mu.Lock()
	defer e.erased.mu.Unlock()
	e.erased.lookup, e.erased.known = f, nil
	e.erased.some.Store(some)
}

// MarkErased records that userID asked for erasure at pos; events served
// from now on follow it.
func (e *Engine) MarkErased(userID string, pos uint64) {
	e.erased.mu.Lock()
	defer e.erased.mu.Unlock()
	if e.erased.known == nil {
		e.erased.known = map[string]erasure{}
	}
	e.erased.known[userID] = erasure{pos: pos, erased: true}
	e.erased.some.Store(true)
}

// erasedAt reports whether sender asked for erasure, and when. Users of
// other servers never have: their server erases for them.
func (e *Engine) erasedAt(tx *store.Tx, sender string) (uint64, bool) {
	if serverOf(sender) != string(e.serverName) {
		return 0, false
	}
	return e.erased.of(tx, sender)
}

func (x *erasures) of(tx *store.Tx, userID string) (uint64, bool) {
	if !x.some.Load() {
		return 0, false
	}
	x.mu.RLock()
	er, ok := x.known[userID]
	lookup := x.lookup
	x.mu.RUnlock()
	if ok {
		return er.pos, er.erased
	}
	if lookup == nil {
		return 0, false
	}
	pos, erased := lookup(tx, userID)
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.known == nil {
		x.known = map[string]erasure{}
	}
	if cur, ok := x.known[userID]; ok {
		return cur.pos, cur.erased // MarkErased won the race
	}
	x.known[userID] = erasure{pos: pos, erased: erased}
	return pos, erased
}

// eraseFor replaces ce's content with the redacted form when it is
// erased for the viewer (erasedFor).
func (e *Engine) eraseFor(tx *store.Tx, ev *Event, v ClientView, ce *ClientEvent) {
	if tx == nil || !e.erasedFor(tx, ev, v.Viewer, ce.Sender, ce.StateKey != nil) {
		return
	}
	ver, err := gomatrixserverlib.GetRoomVersion(ev.Version)
	if err != nil {
		return
	}
	redacted, err := ver.RedactEventJSON(ev.JSON)
	if err != nil {
		ce.Content = json.RawMessage("{}")
		return
	}
	if c := gjson.GetBytes(redacted, "content"); c.Exists() {
		ce.Content = json.RawMessage(c.Raw)
	} else {
		ce.Content = json.RawMessage("{}")
	}
}

// erasedFor reports whether ev, sent by sender, is served to viewer with
// its content erased: the sender asked for erasure and the viewer could
// not see ev at the time (their membership as it stood at the erasure,
// under the history visibility at the event). A user's own events, state
// events and events already redacted are never erased.
func (e *Engine) erasedFor(tx *store.Tx, ev *Event, viewer, sender string, state bool) bool {
	if viewer == "" || viewer == sender || state || ev.Flags&flagRedacted != 0 {
		return false
	}
	pos, erased := e.erasedAt(tx, sender)
	if !erased {
		return false
	}
	h := e.history(tx, viewer, ev.RoomNID)
	h.members = h.members[:at(h.members, pos)+1]
	return !h.canSee(ev.NID)
}

// servedPDU is ev as server gets it: redacted when its sender asked for
// erasure and server had no user joined to the room at that moment. The
// copy is new; the stored event and its cached PDU stay whole.
func (e *Engine) servedPDU(tx *store.Tx, ev *Event, server string) gomatrixserverlib.PDU {
	if ev.Flags&flagRedacted != 0 || ev.PDU.StateKey() != nil {
		return ev.PDU
	}
	pos, erased := e.erasedAt(tx, string(ev.PDU.SenderID()))
	if !erased || e.serverMembership(tx, ev.RoomNID, server, pos, "join") {
		return ev.PDU
	}
	if red := redactedCopy(ev.PDU); red != nil {
		return red
	}
	return ev.PDU
}

// redactedCopy is a redacted copy of pdu, leaving pdu (which the event
// cache may share) untouched; nil if it cannot be made.
func redactedCopy(pdu gomatrixserverlib.PDU) gomatrixserverlib.PDU {
	if pdu.Redacted() {
		return pdu
	}
	ver, err := gomatrixserverlib.GetRoomVersion(pdu.Version())
	if err != nil {
		return nil
	}
	b, err := ver.RedactEventJSON(bytes.Clone(pdu.JSON()))
	if err != nil {
		return nil
	}
	red, err := ver.NewEventFromTrustedJSONWithEventID(pdu.EventID(), b, true)
	if err != nil {
		return nil
	}
	return red
}
